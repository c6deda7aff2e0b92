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
    """Feeds arbitrary byte chunks in; yields complete lines (without the newline). A partial line
    is kept as its pieces and joined once, when its newline comes: re-joining it on every chunk
    made one long line cost quadratic time (a 16 MiB line held the event loop for over a second)."""

    __slots__ = ("_pieces", "_size", "_max_line")

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self._pieces: list[bytes] = []
        self._size = 0
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._keep(chunk)
            return []
        data = b"".join((*self._pieces, chunk)) if self._pieces else chunk
        self._pieces, self._size = [], 0
        lines = data.split(b"\n")
        self._keep(lines.pop())
        return [line for line in lines if line.strip()]

    def _keep(self, partial: bytes) -> None:
        if partial:
            self._pieces.append(partial)
            self._size += len(partial)
        if self._size > self._max_line:
            self._pieces, self._size = [], 0
            raise LineTooLong(f"stream line longer than {self._max_line} bytes")

    def flush(self) -> list[bytes]:
        """What is left when the stream ends: a last line that lacked its newline."""
        rest = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        return [rest] if rest.strip() else []

    @property
    def mid_line(self) -> bool:
        """True when the bytes seen so far stop in the middle of a line."""
        return self._size > 0
