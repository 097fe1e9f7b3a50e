"""What a CLIP tokenizer knows, word by word: for the prompt box's hints and autocompletion.

CLIP's BPE marks a word's last piece with `</w>`, so a word the tokenizer knows whole is one token
`word</w>`, and a word it does not know breaks into several pieces, down to single letters (the
embedded word-level tokenizer turns "lighthouse" into l, i, g, h, t, house). Works for transformers'
`CLIPTokenizer` (`get_vocab`, `tokenize`) and open_clip's `SimpleTokenizer` (`encoder`, `bpe`).
"""

from __future__ import annotations

import bisect
import copy
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

END = "</w>"
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # letters and digits, with inner apostrophes
COMPLETABLE = re.compile(r"^[a-z0-9]+(?:['-][a-z0-9]+)*$")
MANY_PIECES = 3

Status = Literal["known", "split", "letters"]


@dataclass(frozen=True)
class WordPieces:
    text: str
    pieces: list[str]
    status: Status  # known: one token; split: several sub-word pieces; letters: mostly single characters

    @property
    def marked(self) -> bool:
        """What the page highlights: split into letters, or into MANY_PIECES or more pieces."""
        return self.status == "letters" or len(self.pieces) >= MANY_PIECES

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "pieces": self.pieces, "status": self.status, "marked": self.marked}


def classify(pieces: list[str]) -> Status:
    if len(pieces) <= 1:
        return "known"
    singles = sum(1 for p in pieces if len(p.removesuffix(END)) <= 1)
    return "letters" if 2 * singles >= len(pieces) else "split"


class WordVocab:
    """Whole words of one tokenizer, sorted for prefix search and ranked by token id (BPE merge order,
    roughly frequency), plus the tokenizer's pieces for any word."""

    def __init__(self, tokenizer: Any) -> None:
        # Its own copy, used under a lock: a transformers tokenizer keeps padding and truncation as
        # state on its shared backend, so the prompt box tokenizing in a request thread while the
        # worker pads a run's prompts with the model's tokenizer could leave those unpadded.
        self.tokenizer = copy.deepcopy(tokenizer)
        self._lock = threading.Lock()
        vocab: dict[str, int] = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else dict(tokenizer.encoder)
        self.rank: dict[str, int] = {}
        for token, index in vocab.items():
            core = token[: -len(END)] if token.endswith(END) else None
            if core and COMPLETABLE.match(core) and index < self.rank.get(core, index + 1):
                self.rank[core] = index
        self.sorted = sorted(self.rank)
        self.max_tokens = int(getattr(tokenizer, "model_max_length", 0) or getattr(tokenizer, "context_length", 0)
                              or 77)
        if self.max_tokens > 10_000:  # transformers' "no limit" sentinel
            self.max_tokens = 77

    def __len__(self) -> int:
        return len(self.sorted)

    def pieces(self, word: str) -> list[str]:
        with self._lock:
            if hasattr(self.tokenizer, "bpe"):  # open_clip SimpleTokenizer
                return self.tokenizer.bpe(word.lower()).split(" ")
            return list(self.tokenizer.tokenize(word))

    def count(self, text: str) -> int:
        """Tokens of `text` without the start and end tokens (CLIP reads max_tokens - 2 of them)."""
        with self._lock:
            if hasattr(self.tokenizer, "bpe"):  # open_clip: its encode() splits and cleans like CLIP
                return len(self.tokenizer.encode(text))
            return len(self.tokenizer.tokenize(text))

    def word(self, text: str) -> WordPieces:
        pieces = self.pieces(text)
        return WordPieces(text, pieces, classify(pieces))

    def complete(self, prefix: str, limit: int) -> list[str]:
        """Known whole words starting with `prefix` (case-insensitive), most common first."""
        prefix = prefix.lower()
        lo = bisect.bisect_left(self.sorted, prefix)
        hi = bisect.bisect_left(self.sorted, prefix + "\U0010ffff")
        matches = [w for w in self.sorted[lo:hi] if w != prefix]
        return sorted(matches, key=self.rank.__getitem__)[:limit]


def prompt_words(text: str) -> list[str]:
    """The words of a prompt in order, without the `|` separators and `:weight` suffixes."""
    from app.diffusion.prompts import _WEIGHT

    words: list[str] = []
    for part in text.split("|"):
        m = _WEIGHT.match(part)
        words.extend(WORD.findall(m.group(1) if m else part))
    return words
