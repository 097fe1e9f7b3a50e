"""The CLIP text tokenizer's vocabulary, rebuilt from the BPE merge list every CLIP was trained
with (Radford et al. 2021; the file open_clip ships, MIT, in app/diffusion/configs/), so that a
single-file checkpoint, which holds no tokenizer, loads with no hub: SD 1.x, 2.x and both SDXL
encoders all use this vocabulary (49,408 ids) and differ only in their padding token."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

BPE_FILE = Path(__file__).parent / "configs" / "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # vocabulary minus the 256 byte symbols and the two specials, as CLIP cut it


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2 / CLIP BPE use for bytes: printable Latin-1 bytes stand
    for themselves, the others map to code points from 256 upwards, in byte order; the printable ones come first."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + k) for k in range(len(others))]


def clip_vocab(bpe_file: Path = BPE_FILE) -> tuple[dict[str, int], list[str]]:
    """(token -> id, merges as "a b" lines) in CLIP's id order: bytes, bytes + "</w>", merges, specials."""
    lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")[1:N_MERGES + 1]
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in lines]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, lines


def write_clip_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt for transformers' CLIPTokenizer beside the folder's tokenizer_config.json."""
    vocab, merges = clip_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
