"""Real llama-server workers behind the gateway: `/api/show` capabilities come from the server's
`/props` (its chat template and what llama-server worked out of it, its modalities), so a model
whose template takes tools says `tools`, one whose template thinks says `thinking`, and a model
named as an embedding model says only `embedding`."""

import ollama

from tests.conftest import WorkerSpec

# A chatml template that renders tools and tool calls and can switch thinking off, as Qwen3's does.
TOOLS_AND_THINKING = """{%- if tools %}<|im_start|>system
# Tools
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}<|im_end|>
{%- endif %}
{%- for m in messages %}<|im_start|>{{ m.role }}
{%- if m.tool_calls %}{%- for tc in m.tool_calls %}<tool_call>{"name": "{{ tc.function.name }}", \
"arguments": {{ tc.function.arguments | tojson }}}</tool_call>{%- endfor %}{%- else %}{{ m.content }}{%- endif %}\
<|im_end|>
{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% endif %}{% endif %}"""
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}


async def test_capabilities_follow_each_servers_template_and_name(llama_server, tiny_models, start_fleet, tmp_path):
    template = tmp_path / "tools.jinja"
    template.write_text(TOOLS_AND_THINKING)
    plain = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a")
    tools = await llama_server(model=tiny_models["tiny-b"], alias="tiny-tools",
                               extra=("--chat-template-file", str(template)))
    embed = await llama_server(model=tiny_models["tiny-a"], alias="tiny-embed",
                               extra=("--embeddings", "--pooling", "mean"))
    fleet = await start_fleet(*(WorkerSpec(f"llama{i}", kind="llamacpp", url=s.url)
                                for i, s in enumerate((plain, tools, embed))))
    client = ollama.AsyncClient(host=fleet.url)
    shown = {name: await client.show(name) for name in ("tiny-a", "tiny-tools", "tiny-embed")}
    assert {name: s.capabilities for name, s in shown.items()} == {
        "tiny-a": ["completion"], "tiny-tools": ["completion", "tools", "thinking"], "tiny-embed": ["embedding"]}
    assert "tools" in shown["tiny-tools"].template and "tools" not in shown["tiny-a"].template  # LiteLLM reads it
    answer = await client.chat(model="tiny-tools", messages=[{"role": "user", "content": "weather in Paris?"}],
                               tools=[WEATHER], options={"num_predict": 3})
    assert answer.done, "the server that says tools takes them"
    assert len((await client.embed(model="tiny-embed", input="one")).embeddings[0]) == 64


async def test_a_router_mode_server_is_asked_about_the_model_shown(llama_server, tiny_models, start_fleet, tmp_path):
    template = tmp_path / "tools.jinja"
    template.write_text(TOOLS_AND_THINKING)
    server = await llama_server(models_dir=tiny_models["tiny-a"].parent, models_max=1,
                                extra=("--chat-template-file", str(template)))  # every model's instance gets it
    fleet = await start_fleet(WorkerSpec("router0", kind="llamacpp", url=server.url))
    shown = await ollama.AsyncClient(host=fleet.url).show("tiny-b")
    assert shown.capabilities == ["completion", "tools", "thinking"] and "tool_call" in shown.template
