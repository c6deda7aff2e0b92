"""Two properties of what the gateway lets through to a worker.

Case-variant keys: any spelling of a key a worker routes by (the letters' cases, the Kelvin sign
for k, the long s for s, the Turkish i forms Go does not fold), before or after the exact key,
is refused with 400 when Ollama's Go decoder would read it as that field, and is otherwise
served exactly as judged: a key limited to one model never gets another through a worker that
decodes like Go. The oracle is the Go-like worker's own fold, not the gateway's.

Costly shapes: deep nesting, many containers, many items and long model names, in any field of
any front endpoint: a clear 4xx (413 naming the `[server]` limit, 400 past orjson's depth or for
a name no worker holds) or an answer, never a 500, and the gateway keeps serving.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.access import hash_key
from tests.conftest import WorkerSpec
from tests.fuzz.conftest import EXAMPLES, FAST_FAILURE, FUZZ, MODEL, Baseline, assert_front_shape, call, still_serves
from tests.golike_worker import GoLikeWorker, go_fold

FEW = settings(FUZZ, max_examples=max(10, EXAMPLES // 3))  # each example is a round trip: keep the tier quick
KEY = "fuzz-key-0123456789abcdef"
FORBIDDEN = "qwen2:0.5b"
CLIENTS = f'[[clients]]\nname = "fuzz"\nkey_sha256 = "{hash_key(KEY)}"\nmodels = ["{MODEL}"]\n'
MSGS = [{"role": "user", "content": "x"}]
# endpoint -> (its usual body, the routed keys with the value a variant carries)
ROUTED = {
    "/api/chat": ({"messages": MSGS, "stream": False},
                  {"model": FORBIDDEN, "stream": True, "options": {"num_predict": 10**9}, "keep_alive": -1,
                   "messages": [{"role": "user", "content": "other"}]}),
    "/api/generate": ({"prompt": "x", "stream": False},
                      {"model": FORBIDDEN, "stream": True, "options": {"num_predict": 10**9}, "keep_alive": -1,
                       "prompt": "other"}),
    "/api/show": ({}, {"model": FORBIDDEN, "name": FORBIDDEN, "options": {}}),
    "/v1/chat/completions": ({"messages": MSGS}, {"model": FORBIDDEN, "stream": True, "max_tokens": 10**9}),
}


def spellings(name: str) -> st.SearchStrategy[str]:
    def variants(ch: str) -> list[str]:
        extra = {"k": ["\u212a"], "s": ["\u017f"], "i": ["\u0131", "\u0130"]}.get(ch, [])
        return [ch, ch.upper(), *extra]

    return st.tuples(*(st.sampled_from(variants(ch)) for ch in name)).map("".join)


@st.composite
def case_variants(draw):
    path = draw(st.sampled_from(sorted(ROUTED)))
    usual, keys = ROUTED[path]
    field = draw(st.sampled_from(sorted(keys)))
    spelling = draw(spellings(field))
    return path, usual, field, spelling, keys[field], draw(st.booleans())


@pytest.fixture
async def golike_fleet(start_fleet, aiohttp_server):
    worker = GoLikeWorker(models=(MODEL, FORBIDDEN))
    server = await aiohttp_server(worker.app())
    fleet = await start_fleet(WorkerSpec("go0", url=str(server.make_url("")).rstrip("/")),
                              config_extra=FAST_FAILURE + CLIENTS)
    worker.served.clear()  # the prober's own /api/show calls
    return fleet, worker


def object_of(pairs: list[tuple[str, object]]) -> bytes:
    return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}").encode()


@FEW
@given(case=case_variants())
async def test_a_case_variant_of_a_routed_key_is_refused_or_served_as_judged(golike_fleet, case):
    fleet, worker = golike_fleet
    path, usual, field, spelling, value, variant_first = case
    exact = [("model", MODEL), *((k, v) for k, v in usual.items() if k != "model")]
    if field == "name":  # show reads name only when model is empty: name the allowed model there
        exact = [("name", MODEL), *usual.items()]
    variant = (spelling, value)
    pairs = [variant, *exact] if variant_first else [*exact, variant]
    before = len(worker.served)
    reply = await call(fleet.url, "POST", path, object_of(pairs),
                       {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert_front_shape(path, reply)
    served = worker.served[before:]
    assert all(model == MODEL for _, model in served), f"{spelling!r} reached {served}"
    if spelling != field and go_fold(spelling) == go_fold(field):
        assert reply.status == 400 and not served, (spelling, reply.status, reply.body[:200])
    else:  # exact (a duplicate: both keep the last) or a key Go ignores
        assert reply.status in (200, 403), (spelling, reply.status, reply.body[:200])


# -- costly shapes ---------------------------------------------------------------------------------

CONTAINERS, ITEMS = 2000, 5000
LIMITS = FAST_FAILURE.replace("[server]\n", f"[server]\nmax_json_containers = {CONTAINERS}\n"
                                            f"max_json_items = {ITEMS}\n")
ENDPOINTS = {
    "/api/generate": {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_predict": 2}},
    "/api/chat": {"model": MODEL, "messages": MSGS, "stream": False, "options": {"num_predict": 2}},
    "/api/embed": {"model": "all-minilm", "input": "x"},
    "/api/show": {"model": MODEL},
    "/v1/chat/completions": {"model": MODEL, "messages": MSGS, "max_tokens": 2},
    "/v1/embeddings": {"model": "all-minilm", "input": "x"},
}


@pytest.fixture
async def limited_fleet(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", f"{MODEL}=1.3GiB,all-minilm=0.05GiB"), config_extra=LIMITS)
    await still_serves(fleet)
    return fleet


@st.composite
def costly(draw):
    """(path, raw body, the status it must get or None when any non-500 answer will do)."""
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    template = ENDPOINTS[path]
    shape = draw(st.sampled_from(["deep", "containers", "items", "name"]))
    field = draw(st.sampled_from(sorted({*template, "format", "context", "extra"} - {"model"})))
    head = json.dumps({k: v for k, v in template.items() if k != field})[:-1] + f', "{field}": '
    if shape == "deep":
        depth = draw(st.integers(1, 3 * CONTAINERS // 2))
        raw = head + "[" * depth + "]" * depth + "}"
        return path, raw.encode(), 413 if depth > CONTAINERS else (400 if depth > 1000 else None)
    if shape == "containers":
        count = draw(st.integers(CONTAINERS // 2, 2 * CONTAINERS))
        raw = head + "[" + ",".join(["{}"] * count) + "]}"
        over = raw.count("[") + raw.count("{") > CONTAINERS
        return path, raw.encode(), 413 if over else None
    if shape == "items":
        count = draw(st.integers(ITEMS // 2, 2 * ITEMS))
        raw = head + "[" + ",".join(["0"] * count) + "]}"
        return path, raw.encode(), 413 if raw.count(",") > ITEMS else None
    length = draw(st.sampled_from([1000, 1024, 1025, 5000, 100_000]))
    raw = json.dumps({**template, "model": "m" * length})
    return path, raw.encode(), 400 if length > 1024 else 404


@FEW
@given(case=costly())
async def test_costly_shapes_get_a_clear_4xx_or_an_answer_and_the_gateway_keeps_serving(limited_fleet, case):
    path, raw, expected = case
    base = Baseline(limited_fleet)
    reply = await call(limited_fleet.url, "POST", path, raw, {"Content-Type": "application/json"})
    assert_front_shape(path, reply)
    assert reply.status < 400 or len(reply.body) < 4096, "a refusal never echoes the client's input whole"
    if expected is not None:
        assert reply.status == expected, (reply.status, reply.body[:300])
    if reply.status == 413:
        assert b"max_json_" in reply.body
    await base.settled(f"POST {path}")
    await still_serves(limited_fleet)
