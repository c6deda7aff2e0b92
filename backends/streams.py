"""Pure stream codecs: NDJSON line splitting and the Ollama error line.

No I/O and no policy: callers feed bytes in and get complete lines out. The splitter keeps
at most one partial line, bounded by `max_line`, so a worker that never sends a newline
cannot make the gateway buffer without limit.
"""

from __future__ import annotations

import orjson


class LineTooLong(ValueError):
    pass


def error_line(message: str) -> bytes:
    """One Ollama NDJSON error line, as a worker sends it when a started stream fails."""
    return orjson.dumps({"error": message}) + b"\n"


class NdjsonSplitter:
    """Feeds arbitrary byte chunks in; yields complete lines (without the newline)."""

    __slots__ = ("_partial", "_max_line")

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._partial = b""
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self._max_line:
            self._partial = b""
            raise LineTooLong(f"stream line longer than {self._max_line} bytes")
        return [line for line in lines if line.strip()]

    def flush(self) -> list[bytes]:
        """What is left when the stream ends: a last line that lacked its newline."""
        rest, self._partial = self._partial, b""
        return [rest] if rest.strip() else []

    @property
    def mid_line(self) -> bool:
        """True when the bytes seen so far stop in the middle of a line."""
        return bool(self._partial)
