"""Bounded decompression: a small compressed file must not expand into all of memory."""

from __future__ import annotations

import zlib


class DecompressionError(ValueError):
    """A gzip stream that is corrupt or truncated."""


class DecompressedTooLargeError(DecompressionError):
    """A gzip stream whose output passes the allowed size (a decompression bomb, or just too big)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the decompressed data exceeds {limit:,} bytes")
        self.limit = limit


def gunzip_bounded(data: bytes, limit: int, *, chunk: int = 1 << 16) -> bytes:
    """Decompresses a gzip stream, stopping as soon as the output passes ``limit`` bytes.

    A file of several gzip members (as ``bgzip`` or concatenated ``.gz`` files make) decompresses
    to their concatenation, as ``gzip -d`` does.

    Args:
        data: The whole gzip file.
        limit: Largest accepted output, in bytes.
        chunk: Input bytes fed to the inflater per step.

    Returns:
        The decompressed bytes.

    Raises:
        DecompressedTooLargeError: The output would exceed ``limit``.
        DecompressionError: The stream is corrupt or truncated.
    """
    out = bytearray()
    rest = memoryview(data)
    try:
        while True:
            rest = _inflate_member(rest, out, limit, chunk)
            if not bytes(rest[:2]) == b"\x1f\x8b":  # trailing padding after the last member is ignored
                return bytes(out)
    except zlib.error as exc:
        raise DecompressionError(f"the gzip stream is corrupt ({exc})") from exc


def _inflate_member(data: memoryview, out: bytearray, limit: int, chunk: int) -> memoryview:
    """Appends one gzip member's output to ``out``; returns the input that follows the member."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for start in range(0, len(data), chunk):
        out += inflater.decompress(data[start : start + chunk], limit + 1 - len(out))
        while inflater.unconsumed_tail and len(out) <= limit:
            out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        if len(out) > limit:
            raise DecompressedTooLargeError(limit)
        if inflater.eof:
            consumed = start + min(chunk, len(data) - start) - len(inflater.unused_data)
            return data[consumed:]
    raise DecompressionError("the gzip stream is truncated")
