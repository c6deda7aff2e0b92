import orjson
import pytest

from backends.streams import LineTooLong, NdjsonSplitter, error_line


def test_lines_split_across_chunks_come_out_whole():
    s = NdjsonSplitter()
    assert s.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert s.mid_line
    assert s.feed(b':2}\n\n{"c":3}\n') == [b'{"b":2}', b'{"c":3}']
    assert not s.mid_line
    assert s.flush() == []


def test_a_last_line_without_newline_is_flushed():
    s = NdjsonSplitter()
    assert s.feed(b'{"a":1}\n{"done":true}') == [b'{"a":1}']
    assert s.flush() == [b'{"done":true}']


def test_a_line_that_never_ends_is_refused_not_buffered_forever():
    s = NdjsonSplitter(max_line=10)
    with pytest.raises(LineTooLong):
        s.feed(b"x" * 11)


def test_multibyte_characters_split_across_chunks_survive():
    s = NdjsonSplitter()
    line = '{"response":"héllo ☃"}\n'.encode()
    cut = line.index("☃".encode()) + 1
    assert s.feed(line[:cut]) == []
    assert s.feed(line[cut:]) == [line.rstrip(b"\n")]


def test_error_line_is_one_ollama_error_object():
    line = error_line('worker "gpu0" died')
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"error": 'worker "gpu0" died'}
