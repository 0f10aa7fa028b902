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

    Args:
        data: The whole gzip file.
        limit: Largest accepted output, in bytes.
        chunk: Input bytes fed to the inflater per step.

    Returns:
        The decompressed bytes (only the first gzip member).

    Raises:
        DecompressedTooLargeError: The output would exceed ``limit``.
        DecompressionError: The stream is corrupt or truncated.
    """
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    view = memoryview(data)
    try:
        for start in range(0, len(view), chunk):
            out += inflater.decompress(view[start : start + chunk], limit + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
            if len(out) > limit:
                raise DecompressedTooLargeError(limit)
            if inflater.eof:
                break
    except zlib.error as exc:
        raise DecompressionError(f"the gzip stream is corrupt ({exc})") from exc
    if not inflater.eof:
        raise DecompressionError("the gzip stream is truncated")
    return bytes(out)
