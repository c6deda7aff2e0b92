"""Through the gateway, `/api/show` lists what each model can do (tools, thinking, vision, insert,
embedding) as Ollama's library has it, for simulated Ollama workers and OpenAI-compatible ones;
a tool call comes back with the tool's required arguments filled, and `think`, `tools` or
`suffix` sent to a model without them gets Ollama's 400 and its words."""

import asyncio

import ollama
import openai
import pytest

from tests.conftest import WorkerSpec

MODELS = ("llama3.2:1b=1.3GiB,qwen3:0.6b=0.5GiB,deepseek-r1:1.5b=1.1GiB,gemma2:2b=1.6GiB,gemma3:4b=3.3GiB,"
          "llava:7b=4.7GiB,qwen2.5-coder:1.5b=1GiB,nomic-embed-text=0.27GiB,made-up:1b=1GiB")
SHOWN = {"llama3.2:1b": ["completion", "tools"], "qwen3:0.6b": ["completion", "tools", "thinking"],
         "deepseek-r1:1.5b": ["completion", "tools", "thinking"], "gemma2:2b": ["completion"],
         "gemma3:4b": ["completion", "vision"], "llava:7b": ["completion", "vision"],
         "qwen2.5-coder:1.5b": ["completion", "tools", "insert"], "nomic-embed-text": ["embedding"],
         "made-up:1b": ["completion", "tools"]}
ASK = [{"role": "user", "content": "what is the weather in Paris"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Today's weather", "parameters": {
    "type": "object", "required": ["city", "days", "unit", "alerts", "hours"],
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "alerts": {"type": "boolean"},
                   "hours": {"type": "array", "items": {"type": "integer", "minimum": 6}},
                   "verbose": {"type": "boolean"}}}}}
FILLED = {"city": "Paris", "days": 1, "unit": "celsius", "alerts": True, "hours": [6]}


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0", MODELS, vram_gib=48))


async def test_show_lists_each_models_capabilities_as_ollamas_library_does(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    for name, capabilities in SHOWN.items():
        shown = await client.show(name)
        assert shown.capabilities == capabilities, name
        assert (".Tools" in shown.template) == ("tools" in capabilities), name  # what LiteLLM reads
        assert (".Suffix" in shown.template) == ("insert" in capabilities), name


async def test_the_official_client_gets_a_tool_call_with_every_required_argument(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    answer = await client.chat(model="llama3.2:1b", messages=ASK, tools=[WEATHER])
    [call] = answer.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == FILLED  # `verbose` is optional
    parts = [p async for p in await client.chat(model="qwen3:0.6b", messages=ASK, tools=[WEATHER], stream=True)]
    calls = [c for p in parts for c in p.message.tool_calls or ()]
    assert [c.function.arguments for c in calls] == [FILLED] and parts[-1].done

    def lookup_city(name: str, population: int) -> str:
        """Look a city up.

        Args:
            name: the city's name
            population: at least this many people
        """
        return name

    answer = await client.chat(model="made-up:1b", tools=[WEATHER, lookup_city],
                               messages=[{"role": "user", "content": "please lookup_city Lyon"}])
    assert [(c.function.name, c.function.arguments) for c in answer.message.tool_calls] == \
        [("lookup_city", {"name": "Lyon", "population": 1})]  # the tool the user's message names


async def test_think_on_a_model_that_cannot_think_is_refused_with_ollamas_status_and_words(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    for think in (True, "high"):
        with pytest.raises(ollama.ResponseError) as info:
            await client.chat(model="gemma2:2b", messages=ASK, think=think)
        assert (info.value.status_code, info.value.error) == (400, '"gemma2:2b" does not support thinking')
    with pytest.raises(ollama.ResponseError) as info:
        await client.generate(model="Llama3.2:1b", prompt="hi", think=True)  # named as the client spelled it
    assert (info.value.status_code, info.value.error) == (400, '"Llama3.2:1b" does not support thinking')
    assert fleet.workers["gpu0"].stats.loads == [], "a refused request loads nothing"
    assert (await client.chat(model="gemma2:2b", messages=ASK, think=False, options={"num_predict": 2})).done


async def test_a_thinking_model_asked_to_think_answers_its_thought_apart_from_its_content(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    whole = await client.chat(model="qwen3:0.6b", messages=ASK, think=True, options={"num_predict": 2})
    assert whole.done and whole.message.thinking and whole.message.content
    parts = [p async for p in await client.chat(model="qwen3:0.6b", messages=ASK, think=True, stream=True,
                                                  options={"num_predict": 2})]
    assert parts[0].message.thinking == whole.message.thinking and not parts[0].message.content
    assert "".join(p.message.content for p in parts) and not any(p.message.thinking for p in parts[1:])
    plain = await client.chat(model="qwen3:0.6b", messages=ASK, options={"num_predict": 2})
    assert not plain.message.thinking  # not asked to think


async def test_tools_suffix_and_chat_the_model_lacks_are_refused_as_ollama_refuses_them(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="gemma2:2b", messages=ASK, tools=[WEATHER])
    assert (info.value.status_code, info.value.error) == (400, "registry.ollama.ai/library/gemma2:2b does not support "
                                                               "tools")
    with pytest.raises(ollama.ResponseError) as info:
        await client.generate(model="llama3.2:1b", prompt="def f(", suffix="    return x")
    assert info.value.error == "registry.ollama.ai/library/llama3.2:1b does not support insert"
    assert (await client.generate(model="qwen2.5-coder:1.5b", prompt="def f(", suffix="  return x",
                                  options={"num_predict": 2})).done
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nomic-embed-text", messages=ASK)
    assert (info.value.status_code, info.value.error) == (400, '"nomic-embed-text" does not support chat')


async def test_reasoning_effort_on_v1_is_think_and_refused_in_openais_shape(fleet):
    client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="gemma2:2b", messages=ASK, reasoning_effort="low")
    assert info.value.body["message"] == '"gemma2:2b" does not support thinking'
    assert info.value.body["type"] == "invalid_request_error"
    answer = await client.chat.completions.create(model="gemma2:2b", messages=ASK, reasoning_effort="none",
                                                  max_tokens=2)
    assert answer.choices[0].message.content
    called = await client.chat.completions.create(model="deepseek-r1:1.5b", messages=ASK, tools=[WEATHER],
                                                  reasoning_effort="high")
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.tool_calls[0].function.arguments == \
        '{"city":"Paris","days":1,"unit":"celsius","alerts":true,"hours":[6]}'


async def test_nested_required_objects_are_filled_too(fleet):
    # (the ollama client keeps only one level of a tool's schema, so this one goes as raw JSON)
    where = {"type": "object", "required": ["lat", "near"], "properties": {
        "lat": {"type": "number", "exclusiveMinimum": 0}, "lon": {"type": "number"},
        "near": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]}}}
    tool = {"type": "function", "function": {"name": "locate", "parameters": {
        "type": "object", "required": ["where", "id"], "properties": {"where": where, "id": {"const": 7}}}}}
    async with fleet.post("/api/chat", {"model": "llama3.2:1b", "messages": ASK, "tools": [tool],
                                        "stream": False}) as resp:
        assert resp.status == 200
        [call] = (await resp.json())["message"]["tool_calls"]
    assert call["function"]["arguments"] == {"where": {"lat": 1.0, "near": "1970-01-01"}, "id": 7}


async def test_openai_compatible_workers_show_tools_unless_the_model_only_embeds(start_fleet):
    fleet = await start_fleet(WorkerSpec("oai0", "llama3.2:1b=1.3GiB,all-minilm=0.05GiB,qwen2.5-vl:3b=3GiB",
                                         kind="openai"))
    client = ollama.AsyncClient(host=fleet.url)
    shown = {name: await client.show(name) for name in ("llama3.2:1b", "all-minilm", "qwen2.5-vl:3b")}
    assert {name: s.capabilities for name, s in shown.items()} == {
        "llama3.2:1b": ["completion", "tools"], "all-minilm": ["embedding"],
        "qwen2.5-vl:3b": ["completion", "vision", "tools"]}
    assert "tools" in shown["llama3.2:1b"].template.lower() and not shown["all-minilm"].template
    answer = await client.chat(model="llama3.2:1b", messages=ASK, tools=[WEATHER])
    assert answer.message.tool_calls[0].function.arguments == FILLED


async def test_litellm_sees_function_calling_from_show(fleet, monkeypatch):
    """LiteLLM's supports_function_calling("ollama_chat/...") asks /api/show (it reads the template)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # read at import: no fetch of LiteLLM's price list
    import litellm  # a test dependency (pyproject [test]); imported here, after the cost-map setting above
    monkeypatch.setenv("OLLAMA_API_BASE", fleet.url)

    def ask(name: str) -> bool:  # LiteLLM asks synchronously: off the loop the gateway runs on
        return litellm.supports_function_calling(f"ollama_chat/{name}")

    supported = {name: await asyncio.to_thread(ask, name) for name in SHOWN}
    assert supported == {name: "tools" in capabilities for name, capabilities in SHOWN.items()}
