"""Hostile worker replies, for Ollama-kind and llama.cpp/OpenAI-kind workers: malformed JSON lines,
truncated streams, streams that stop mid-line, wrong content types, a 200 with an error body, gzip
claimed but not gzip, lying or missing Content-Length with an early close, SSE without [DONE],
binary garbage, a worker that hangs.

For each example: no 500 (a broken worker is a 502/504 naming it), errors in the front API's shape,
a translated stream ends with a final line or exactly one error line, an answer within BOUND_S, no
task or pooled connection left over, and the gateway serves a good answer right after.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, MODEL, Baseline, Script, assert_front_shape, call

MSGS = [{"role": "user", "content": "x"}]
REQUESTS = [  # (path, body): what the client asks while the worker misbehaves
    ("/api/generate", {"model": MODEL, "prompt": "x"}),
    ("/api/generate", {"model": MODEL, "prompt": "x", "stream": False}),
    ("/api/chat", {"model": MODEL, "messages": MSGS}),
    ("/api/chat", {"model": MODEL, "messages": MSGS, "stream": False}),
    ("/api/embed", {"model": MODEL, "input": "x"}),
    ("/api/embeddings", {"model": MODEL, "prompt": "x"}),
    ("/api/show", {"model": MODEL}),
    ("/v1/chat/completions", {"model": MODEL, "messages": MSGS, "stream": True}),
    ("/v1/chat/completions", {"model": MODEL, "messages": MSGS}),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "stream": True}),
    ("/v1/embeddings", {"model": MODEL, "input": "x"}),
]

OLLAMA_LINE = b'{"model":"m","response":"hi","done":false}\n'
OLLAMA_FINAL = b'{"model":"m","response":"","done":true,"eval_count":1,"eval_duration":5}\n'
SSE_CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
SSE_DONE = b"data: [DONE]\n\n"
OPENAI_WHOLE = b'{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],' \
               b'"usage":{"completion_tokens":1},"data":[{"embedding":[0.1],"index":0}]}'
PIECES = st.sampled_from([
    OLLAMA_LINE, OLLAMA_FINAL, SSE_CHUNK, SSE_DONE, OPENAI_WHOLE, b"\n", b"\n\n",
    b'{"model":"m","resp', b'onse":"x","done":false}\n', b"{not json}\n", b"data: {not json}\n\n",
    b'data: {"choices":[1]}\n\n', b'data: {"choices":"x"}\n\n', b'data: {"choices":[{"delta":"x"}]}\n\n',
    b'data: {"choices":[{"delta":{"tool_calls":[1]}}]}\n\n', b'data: {"choices":[{"delta":{"tool_calls":'
    b'[{"index":"a","function":{"name":5}}]}}]}\n\n', b'data: {"usage":"x","timings":{"prompt_ms":"x"}}\n\n',
    b'data: {"timings":{"predicted_ms":"x","predicted_n":"y"}}\n\n', b'data: {"error":{"message":"boom"}}\n\n',
    b'data: {"error":7}\n\n', b"data: [1,2]\n\n", b'data: "x"\n\n', b'data: {"content":"x","stop":true,'
    b'"timings":{"prompt_ms":null}}\n\n', b'{"error":"worker says no"}', b'{"error":{"message":"no"}}',
    b"<html><body>502 Bad Gateway</body></html>", b"\x00\xff\xfe\x80garbage\x1f\x8b", b"\xc3\x28\n",
    b'{"choices":[]}', b'{"choices":[{"message":null}]}', b'{"choices":[1]}', b'{"data":[1]}',
    b'{"data":"x"}', b'{"usage":{"prompt_tokens":"x"},"data":[]}', b"[]", b"null", b'"x"', b"1e999",
    b'{"content":"x","stop_type":5,"timings":{"prompt_ms":[1]}}', b'{"model_path":5,"chat_template":[1]}',
    b'{"default_generation_settings":"x"}', b"x" * 70_000,
])
CONTENT_TYPES = st.sampled_from(["application/x-ndjson", "text/event-stream", "application/json", "text/html",
                                 None, "application/octet-stream", "text/plain; charset=utf-8"])
SCRIPTS = st.builds(
    Script,
    status=st.sampled_from([200, 200, 200, 200, 201, 400, 404, 413, 418, 422, 429, 500, 501, 502, 503, 504]),
    content_type=CONTENT_TYPES,
    pieces=st.lists(PIECES, min_size=0, max_size=6),
    framing=st.sampled_from(["length", "length", "short_length", "long_length", "chunked", "bad_chunked", "close"]),
    gzip_claimed=st.booleans(),
    real_gzip=st.sampled_from([False, False, False, True]),
    pause_s=st.sampled_from([0.0, 0.0, 0.01]),
    end=st.sampled_from(["close", "close", "abort", "hang"]),
)
GOOD = {
    "ollama": Script(200, "application/json", [b'{"model":"m","response":"ok","done":true}']),
    "openai": Script(200, "application/json", [OPENAI_WHOLE]),
}
GOOD["llamacpp"] = GOOD["openai"]


def judge_success(path: str, body: dict, kind: str, reply) -> None:
    """A 2xx the gateway itself made up (a translated stream) must be whole lines that end properly."""
    if reply.status >= 300 or path.startswith("/v1/") or kind == "ollama":
        return  # Ollama workers' bytes and /v1 answers pass through unparsed, by design
    if reply.content_type == "application/x-ndjson":
        lines = [json.loads(x) for x in reply.body.splitlines() if x.strip()]
        assert lines, reply.body[:300]
        errors = [line for line in lines if "error" in line]
        assert len(errors) <= 1 and (not errors or lines[-1] is errors[0]), reply.body[:500]
        assert lines[-1].get("done") is True or errors, reply.body[:500]
    else:
        json.loads(reply.body)  # a whole translated answer is one JSON document


async def served_after(fleet, worker, kind: str) -> None:
    worker.script = GOOD[kind]
    body = {"model": MODEL, "prompt": "x", "stream": False}
    reply = await call(fleet.url, "POST", "/api/generate", json.dumps(body).encode(),
                       {"Content-Type": "application/json"})
    assert reply.status == 200 and json.loads(reply.body)["done"] is True, reply


async def run_case(fleet, worker, kind: str, request: tuple[str, dict], script: Script) -> None:
    await served_after(fleet, worker, kind)  # pools warm before the baseline
    base = Baseline(fleet)
    worker.script = script
    path, body = request
    reply = await call(fleet.url, "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert_front_shape(path, reply)
    judge_success(path, body, kind, reply)
    if reply.status in (502, 504):
        text = reply.body.decode()
        assert "evil" in text, f"a worker failure must name the worker: {text[:300]}"
    await base.settled(f"{path} against {script}")
    await served_after(fleet, worker, kind)


@pytest.mark.parametrize("kind", ["ollama", "openai", "llamacpp"])
@FUZZ
@given(request=st.sampled_from(REQUESTS), script=SCRIPTS)
@example(request=REQUESTS[0], script=Script(200, "application/x-ndjson", [OLLAMA_LINE, b'{"resp'], "close"))
@example(request=REQUESTS[2], script=Script(200, "text/html", [b"<html>oops</html>"]))
@example(request=REQUESTS[7], script=Script(200, "application/json", [SSE_CHUNK], "chunked"))
@example(request=REQUESTS[7], script=Script(200, "text/event-stream", [SSE_CHUNK], "close"))
@example(request=REQUESTS[1], script=Script(200, "application/json", [b'{"error":"x"}']))
@example(request=REQUESTS[1], script=Script(200, "application/json", [OPENAI_WHOLE], gzip_claimed=True))
@example(request=REQUESTS[0], script=Script(200, "application/x-ndjson", [OLLAMA_LINE], "long_length"))
@example(request=REQUESTS[2], script=Script(200, "text/event-stream", [b"\x00\xff\xfe\x80garbage"], "close"))
# regressions: a translator crash mid-stream (500 written into a started stream), a worker's HTML/NDJSON error
# passed through unshaped, and a /v1 worker error kept without its type and code
@example(request=REQUESTS[0], script=Script(200, "text/event-stream", [SSE_CHUNK, b'data: {"choices":[1]}\n\n']))
@example(request=REQUESTS[0], script=Script(404, "text/html", [b"<html>no</html>"]))
@example(request=REQUESTS[0], script=Script(400, "application/x-ndjson", []))
@example(request=REQUESTS[8], script=Script(400, "application/json", [b'{"error":{"message":"no"}}']))
async def test_hostile_replies(hostile, kind, request, script):
    if not hasattr(hostile, "started"):
        hostile.started = {}
    if kind not in hostile.started:
        hostile.started[kind] = await hostile(kind)
    fleet, worker = hostile.started[kind]
    await run_case(fleet, worker, kind, request, script)


@pytest.mark.parametrize("kind", ["ollama", "openai", "llamacpp"])
@pytest.mark.parametrize("content_type", ["application/x-ndjson", "text/event-stream", "application/json"])
async def test_a_20_mb_line_with_no_newline(hostile, kind, content_type):
    fleet, worker = await hostile(kind)
    huge = Script(200, content_type, [b'{"response":"' + b"x" * (1 << 20)] * 20, "close")
    for path, body in (REQUESTS[0], REQUESTS[1], REQUESTS[7]):
        await run_case(fleet, worker, kind, (path, body), huge)


@pytest.mark.parametrize("kind", ["openai", "llamacpp"])
@pytest.mark.parametrize("path", ["/api/generate", "/api/embed"])
async def test_a_200_with_an_error_body_is_a_502_naming_the_worker_not_an_empty_answer(hostile, kind, path):
    fleet, worker = await hostile(kind)
    worker.script = Script(200, "application/json", [b'{"error":{"message":"out of memory"}}'])
    body = {"model": MODEL, "prompt": "x", "input": "x", "stream": False}
    reply = await call(fleet.url, "POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert reply.status == 502, reply
    assert "evil" in json.loads(reply.body)["error"] and "out of memory" in json.loads(reply.body)["error"]


@pytest.mark.parametrize("kind", ["openai", "llamacpp"])
async def test_a_stream_content_type_on_embed_is_read_as_one_answer(hostile, kind):
    """Regression: an NDJSON/SSE content type used to send /api/embed down the stream relay, raw."""
    fleet, worker = await hostile(kind)
    worker.script = Script(200, "application/x-ndjson", [OPENAI_WHOLE])
    reply = await call(fleet.url, "POST", "/api/embed", b'{"model": "llama3.2:1b", "input": "x"}',
                       {"Content-Type": "application/json"})
    assert reply.status == 200 and json.loads(reply.body)["embeddings"] == [[0.1]], reply
