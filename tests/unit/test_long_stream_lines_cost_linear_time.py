"""A worker's stream line (NDJSON) or event (SSE) that never ends is refused at its cap, and getting
there costs about as much as reading it once: the codecs keep the pieces and join them once, instead
of re-joining the whole partial line on every chunk (a 16 MiB line in 64 KiB chunks held the event
loop, and every other client, for over a second). Compared with one whole read of the same bytes,
so the bound is about the shape of the cost, not about this machine's speed."""

import time

import pytest

from backends.openai_front import SseRelay
from backends.streams import LineTooLong, NdjsonSplitter

CAP = 16 * 1024 * 1024
CHUNK = b"x" * 65536


def seconds_to_refuse(codec, chunk: bytes) -> float:
    started = time.perf_counter()
    with pytest.raises(LineTooLong):
        for _ in range(CAP // len(chunk) + 2):
            codec.feed(chunk)
    return time.perf_counter() - started


@pytest.mark.parametrize("codec", [NdjsonSplitter, SseRelay])
def test_an_endless_line_in_small_chunks_costs_about_one_pass_over_its_bytes(codec):
    one_pass = min(seconds_to_refuse(codec(CAP), b"x" * (CAP + 1)) for _ in range(3))
    chunked = min(seconds_to_refuse(codec(CAP), CHUNK) for _ in range(3))
    assert chunked < 20 * one_pass + 0.05, f"{chunked:.3f}s in chunks vs {one_pass:.4f}s in one piece"


def test_lines_and_events_still_come_out_whole_across_many_chunks():
    splitter, relay = NdjsonSplitter(), SseRelay()
    line, event = b'{"response":"' + b"y" * 300_000 + b'"}', b"data: " + b"z" * 300_000 + b"\r\n\r\n"
    out_lines, out_events = [], b""
    for i in range(0, len(line) + 1, 7000):
        out_lines += splitter.feed((line + b"\n")[i:i + 7000])
    for i in range(0, len(event), 7000):
        out_events += relay.feed(event[i:i + 7000])
    assert out_lines == [line] and not splitter.mid_line
    assert out_events == event and relay.end() == b""
