"""What `/api/show` says a model can do: llama-server's `/props` read with Ollama's template rules
(backends.capabilities), OpenAI-compatible ids, and the simulated worker's library facts and
tool-call arguments filled from a tool's schema (local_workers.sim.capabilities)."""

import pytest

from backends.capabilities import llamacpp_capabilities, openai_capabilities
from backends.openai_compat import show_answer
from local_workers.sim.capabilities import capabilities, full_name, refusal, tool_call, value_for
from local_workers.sim.models import SimModel

QWEN3 = ("{%- if tools %}{{- '<tools>' }}{% for tool in tools %}{{ tool | tojson }}{% endfor %}{%- endif %}"
         "{%- for message in messages %}{%- if message.tool_calls %}<tool_call>{% endif %}"
         "{%- if reasoning_content %}<think>\n{{ reasoning_content }}\n</think>{% endif %}{% endfor %}"
         "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>{% endif %}")
CAPS_NONE = {"supports_tools": False, "supports_tool_calls": False, "supports_reasoning_effort": False}


@pytest.mark.parametrize(("props", "model_id", "expected"), [
    ({}, "tiny", ["completion"]),
    ({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}", "chat_template_caps": CAPS_NONE},
     "tiny", ["completion"]),
    ({"chat_template": QWEN3}, "qwen3-8b", ["completion", "tools", "thinking"]),  # no caps: Ollama's text rules
    ({"chat_template": QWEN3, "chat_template_caps": CAPS_NONE}, "qwen3", ["completion", "thinking"]),  # caps win
    ({"chat_template": "{{ messages }}", "chat_template_caps": {"supports_tools": True}}, "m", ["completion", "tools"]),
    ({"chat_template": "x", "chat_template_tool_use": "{{ tools }}"}, "hermes", ["completion", "tools"]),
    ({"chat_template": "{{ content.split('</think>')[-1] }}"}, "r1", ["completion", "thinking"]),
    ({"chat_template": "{{ content.split('</think>') }}{{ reasoning_content }}"}, "m", ["completion"]),
    ({"chat_template": "<|channel|>analysis", "chat_template_caps": {"supports_reasoning_effort": True}},
     "gpt-oss-20b", ["completion", "thinking"]),
    ({"modalities": {"vision": True, "audio": False}, "chat_template": QWEN3}, "qwen2.5-vl",
     ["completion", "vision", "tools", "thinking"]),
    ({"model_path": "/models/nomic-embed-text-v1.5.Q8_0.gguf", "chat_template": QWEN3}, "default", ["embedding"]),
    ({"modalities": "yes", "chat_template_caps": [], "chat_template": 7}, "odd", ["completion"]),
])
def test_llama_server_props_decide_tools_thinking_vision_and_embedding(props, model_id, expected):
    assert llamacpp_capabilities(props, model_id) == expected


@pytest.mark.parametrize(("model_id", "expected"), [
    ("meta-llama/Llama-3.1-8B-Instruct", ["completion", "tools"]),
    ("qwen2.5:7b", ["completion", "tools"]),
    ("Qwen/Qwen2.5-VL-7B-Instruct", ["completion", "vision", "tools"]),
    ("llava-v1.6-mistral-7b", ["completion", "vision", "tools"]),
    ("text-embedding-3-small", ["embedding"]),
    ("BAAI/bge-m3", ["embedding"]),
    ("intfloat/e5-large-v2", ["embedding"]),
    ("sentence-transformers/all-MiniLM-L6-v2", ["embedding"]),
    ("devlin-integrate-7b", ["completion", "tools"]),  # "vl", "gte" and "e5" only as words
])
def test_openai_compatible_models_take_tools_unless_their_id_says_they_embed(model_id, expected):
    assert openai_capabilities(model_id) == expected


def test_a_worker_with_no_template_that_takes_tools_says_so_in_the_template():
    assert "tools" in show_answer("m:latest", {}, "m", ["completion", "tools"])["template"].lower()
    assert show_answer("e:latest", {}, "e", ["embedding"])["template"] == ""
    assert show_answer("t:latest", {"chat_template": "{{ x }}"}, "t", ["completion", "tools"])["template"] == "{{ x }}"


@pytest.mark.parametrize(("name", "expected"), [
    ("llama3.2:1b", ["completion", "tools"]), ("qwen3:30b-a3b", ["completion", "tools", "thinking"]),
    ("deepseek-r1", ["completion", "tools", "thinking"]), ("gemma2:2b", ["completion"]),
    ("gemma3:4b", ["completion", "vision"]), ("gemma3:1b", ["completion"]), ("llava:13b", ["completion", "vision"]),
    ("llama3.2-vision:11b", ["completion", "vision"]), ("qwen2.5-coder:7b", ["completion", "tools", "insert"]),
    ("qwen2.5-coder:1.5b-base", ["completion", "insert"]), ("codellama:7b-code", ["completion", "insert"]),
    ("codellama:code", ["completion", "insert"]), ("codellama:34b-code", ["completion"]),
    ("codellama:7b-instruct", ["completion"]), ("starcoder2:3b", ["completion", "insert"]),
    ("nomic-embed-text", ["embedding"]), ("all-minilm:l6-v2", ["embedding"]), ("my-embedder:1b", ["embedding"]),
    ("registry.ollama.ai/library/qwen3:8b", ["completion", "tools", "thinking"]), ("a:1b", ["completion", "tools"]),
])
def test_simulated_models_can_do_what_their_namesakes_in_ollamas_library_can(name, expected):
    assert capabilities(SimModel(name, 1)) == expected


@pytest.mark.parametrize(("name", "data", "chat", "message"), [
    ("gemma2:2b", {"think": True}, True, '"gemma2:2b" does not support thinking'),
    ("gemma2:2b", {"think": "low", "tools": [{}]}, True, '"gemma2:2b" does not support thinking'),  # checked first
    ("gemma2:2b", {"think": False, "tools": [{}]}, True, "registry.ollama.ai/library/gemma2:2b does not support tools"),
    ("gemma2:2b", {"think": "bogus"}, True, None),
    ("llama3.2:1b", {"suffix": "x"}, False, "registry.ollama.ai/library/llama3.2:1b does not support insert"),
    ("llama3.2:1b", {"suffix": "x"}, True, None),  # chat has no suffix
    ("all-minilm", {}, True, '"all-minilm" does not support chat'),
    ("all-minilm", {}, False, '"all-minilm" does not support generate'),
    ("qwen3:8b", {"think": "high", "tools": [{}]}, True, None),
])
def test_a_request_for_what_the_model_cannot_do_gets_ollamas_words(name, data, chat, message):
    assert refusal(SimModel(name, 1), name, data, chat) == message


@pytest.mark.parametrize(("name", "full"), [
    ("gemma2", "registry.ollama.ai/library/gemma2:latest"), ("Me/Model:Q4", "registry.ollama.ai/Me/Model:Q4"),
    ("hf.co/org/repo:latest", "hf.co/org/repo:latest"),
])
def test_names_in_refusals_get_ollamas_defaults(name, full):
    assert full_name(name) == full


@pytest.mark.parametrize(("schema", "value"), [
    ({"type": "string"}, "Paris"), ({"type": "string", "format": "date-time"}, "1970-01-01T00:00:00Z"),
    ({"type": "string", "enum": ["b", "a"]}, "b"), ({"const": 3}, 3), ({"type": "integer", "default": 9}, 9),
    ({"type": "string", "examples": ["x"]}, "x"), ({"type": "integer"}, 1), ({"type": "number"}, 1.0),
    ({"type": "integer", "minimum": 5, "maximum": 9}, 5), ({"type": "integer", "maximum": 0}, 0),
    ({"type": "integer", "exclusiveMinimum": 2}, 3), ({"type": "boolean"}, True), ({"type": "null"}, None),
    ({"type": ["null", "integer"]}, 1), ({"anyOf": [{"type": "boolean"}, {"type": "string"}]}, True),
    ({"type": "array", "items": {"type": "integer"}}, [1]), ({"type": "array"}, ["Paris"]),
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "boolean"}, "b": {}}}, {"a": True}),
    ({"properties": {"q": {"type": "string"}}, "required": ["q", "missing"]}, {"q": "Paris", "missing": "Paris"}),
    ({"type": "integer", "minimum": True}, 1), ("not a schema", "Paris"),
])
def test_each_schema_type_gets_a_value_that_satisfies_it(schema, value):
    assert value_for(schema, "key", "Paris", 1) == value


def test_a_tool_call_fills_only_required_arguments_and_follows_the_schema_no_deeper_than_its_cap():
    deep: dict = {"type": "object", "required": ["next"], "properties": {}}
    deep["properties"]["next"] = deep  # a schema that refers to itself
    tools = [{"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "Nest", "parameters": deep}}]
    call = tool_call(tools, [{"role": "user", "content": "please call nest"}])
    assert call is not None and call["function"]["name"] == "Nest"
    depth, level = 0, call["function"]["arguments"]
    while isinstance(level, dict):
        depth, level = depth + 1, level["next"]
    assert level is None and depth == 9
    assert tool_call(tools, [{"role": "user", "content": "hello"}]) == {"function": {"name": "first", "arguments": {}}}
    assert tool_call(tools, [{"role": "assistant", "content": "first"}]) is None
    assert tool_call([{"type": "function"}], [{"role": "user", "content": "x"}]) == \
        {"function": {"name": "tool", "arguments": {}}}
