"""A word-level CLIP BPE: every caption word is exactly one token, anything else falls back to bytes.

CLIP's BPE applies merges by rank anywhere in a word, so a merge list built left to right per word
gets hijacked by other words' merges. Building each word right to left from its end-of-word piece
avoids that: every merge is `char + suffix</w>`, a `</w>` piece only ever sits at a word's end, so
each word has exactly one merge candidate at a time and the chain is unambiguous.
"""

from __future__ import annotations

import json
import re
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer, restricted to what clean caption text holds: letter runs, single digits, symbols
_PIECES = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def caption_vocabulary(captions: list[list[str]]) -> list[str]:
    """The sorted pieces CLIP's pre-tokenizer cuts the (lower-case) captions into."""
    return sorted({w for caps in captions for c in caps for w in _PIECES.findall(c.lower())})


def word_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges that build each word from its last character leftwards, shared suffixes once."""
    base = set(bytes_to_unicode().values())
    seen: set[tuple[str, str]] = set()
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words), key=lambda w: (len(w), w)):
        if len(word) < 2 or any(c not in base for c in word):
            continue
        for i in range(len(word) - 2, -1, -1):
            pair = (word[i], word[i + 1:] + "</w>")
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def write_word_clip_tokenizer(folder: Path, words: list[str], max_length: int = 32) -> int:
    """Write vocab.json, merges.txt and configs for a transformers CLIPTokenizer. Returns vocab size.

    Special tokens come last, so `bos = vocab - 2`, `eos = pad = vocab - 1`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in base + [c + "</w>" for c in base]:
        vocab.setdefault(tok, len(vocab))
    merges = word_merges(words)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for special in (BOS, EOS):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True,
        "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
    }, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2)
    )
    return len(vocab)
