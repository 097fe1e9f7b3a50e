"""The text chunks of a PNG (tEXt, zTXt, iTXt), read by walking its chunk list: image data is
skipped, never decoded, and every chunk's size is checked against the bytes there and a cap."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 256 * 1024  # one chunk's text, after decompression
MAX_TEXT_CHUNKS = 64
_HEAD = struct.Struct(">I4s")


class PngTextError(ValueError):
    """Not a PNG, a damaged one, or a text chunk beyond the caps; the message says which."""


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error:
        raise PngTextError("a compressed text chunk is damaged") from None
    if inflater.unconsumed_tail:
        raise PngTextError(f"a text chunk is larger than {MAX_TEXT_BYTES // 1024} KiB")
    return out


def _decode(kind: bytes, body: bytes) -> tuple[str, str]:
    key, sep, rest = body.partition(b"\0")
    if not sep or not 1 <= len(key) <= 79:
        raise PngTextError("a text chunk has no keyword")
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        if rest[:1] != b"\0":
            raise PngTextError("unknown text compression")
        return name, _inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise PngTextError("a text chunk is cut short")
    flag, method, tail = rest[0], rest[1], rest[2:]
    _lang, _, tail = tail.partition(b"\0")
    _translated, _, text = tail.partition(b"\0")
    if flag:
        if method != 0:
            raise PngTextError("unknown text compression")
        text = _inflate(text)
    return name, text.decode("utf-8", errors="replace")


def text_chunks(data: bytes) -> dict[str, str]:
    """{keyword: text} of PNG bytes; raises PngTextError for anything that is not a readable PNG."""
    if not data.startswith(SIGNATURE):
        raise PngTextError("not a PNG file")
    out: dict[str, str] = {}
    pos, seen = len(SIGNATURE), 0
    while pos + _HEAD.size <= len(data):
        length, kind = _HEAD.unpack_from(data, pos)
        start, end = pos + _HEAD.size, pos + _HEAD.size + length
        if end + 4 > len(data):
            raise PngTextError("the PNG is cut short")
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            seen += 1
            if seen > MAX_TEXT_CHUNKS:
                raise PngTextError(f"more than {MAX_TEXT_CHUNKS} text chunks")
            if length > MAX_TEXT_BYTES:
                raise PngTextError(f"a text chunk is larger than {MAX_TEXT_BYTES // 1024} KiB")
            (crc,) = struct.unpack_from(">I", data, end)
            if zlib.crc32(data[pos + 4:end]) != crc:
                raise PngTextError("a text chunk is damaged (CRC)")
            key, text = _decode(kind, data[start:end])
            out.setdefault(key, text)
        if kind == b"IEND":
            return out
        pos = end + 4
    raise PngTextError("the PNG is cut short")
