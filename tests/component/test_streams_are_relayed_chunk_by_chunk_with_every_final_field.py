import orjson

from tests.conftest import WorkerSpec

FINAL_FIELDS = {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration", "done_reason"}


async def test_chat_stream_arrives_as_ndjson_lines_ending_with_the_final_fields(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 5}}
    async with fleet.post("/api/chat", body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        assert resp.headers["X-Beacon-Worker"] == "gpu0"
        assert resp.headers["X-Request-ID"]
        lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    assert len(lines) == 6
    assert all(not line["done"] and line["message"]["role"] == "assistant" for line in lines[:-1])
    final = lines[-1]
    assert final["done"] is True and final.keys() >= FINAL_FIELDS
    assert final["done_reason"] == "length" and final["eval_count"] == 5


async def test_generate_without_stream_answers_one_object(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "why", "stream": False}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        answer = await resp.json()
    assert answer["done"] is True and answer["response"] and answer.keys() >= FINAL_FIELDS


async def test_the_first_chunk_reaches_the_client_before_the_stream_ends(start_fleet):
    # 5 tokens/s: if the gateway buffered, the first line would arrive only after ~2 s.
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=5))
    body = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 10}}
    async with fleet.post("/api/generate", body) as resp:
        first = orjson.loads(await resp.content.readline())
        state = fleet.workers["gpu0"].stats
        assert first["done"] is False
        assert state.completed == 0, "the worker was still generating when the first line arrived"
        rest = [line async for line in resp.content if line.strip()]
    assert orjson.loads(rest[-1])["done"] is True


async def test_client_request_id_is_kept_and_sent_back(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    body = {"model": "llama3.2:1b", "prompt": "x", "stream": False}
    async with fleet.post("/api/generate", body, headers={"X-Request-ID": "abc-123"}) as resp:
        assert resp.headers["X-Request-ID"] == "abc-123"
