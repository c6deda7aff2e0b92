"""The simulated worker's model values: sizes, model specs, names as Ollama matches them, keep_alive."""

import math

import pytest

from local_workers.sim import SimModel, SimWorker, parse_models, parse_size
from local_workers.sim.models import GIB, default_registry, normalise, parse_keep_alive


@pytest.mark.parametrize(("text", "size"), [
    ("1.3GiB", int(1.3 * GIB)), ("512MiB", 512 * 1024**2), ("2", 2 * GIB), ("0.5", GIB // 2), ("1GB", 10**9),
    ("250MB", 250 * 10**6), ("10 KiB", 10240), ("7B", 7), ("4gib", 4 * GIB)])
def test_sizes_parse_with_binary_and_decimal_units_and_bare_numbers_are_gib(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "GiB", "1.2.3GiB", "5 parsecs", "-1GiB"])
def test_sizes_that_are_not_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_model_specs_become_models_named_as_ollama_names_them():
    models = parse_models("Llama3.2:1B=1.3GiB, qwen2.5=4.7GiB,,tiny:0.5b=300MiB")
    assert [m.name for m in models] == ["llama3.2:1b", "qwen2.5:latest", "tiny:0.5b"]
    assert [m.size_bytes for m in models] == [int(1.3 * GIB), int(4.7 * GIB), 300 * 1024**2]
    assert models[0].parameter_size == "1B" and models[2].parameter_size == "0.5B"
    assert models[1].parameter_size == "8.4B", "no size in the tag: derived from the file size at Q4"


@pytest.mark.parametrize("bad", ["no-size", "=1GiB", "a:1b=lots"])
def test_model_specs_without_a_name_or_size_are_refused(bad):
    with pytest.raises(ValueError):
        parse_models(bad)


def test_a_model_has_ollama_defaults_and_a_digest_from_its_name():
    model = SimModel("Mistral", 4 * GIB)
    assert model.name == "mistral:latest"
    assert (model.family, model.quantization_level, model.context_length, model.embedding_length) == \
           ("llama", "Q4_K_M", 4096, 384)
    assert model.digest.startswith("sha256:") and len(model.digest) == 7 + 64
    assert model.digest == SimModel("mistral:latest", 1).digest != SimModel("mistral:7b", 1).digest
    with pytest.raises(AttributeError):
        model.size_bytes = 1  # frozen


@pytest.mark.parametrize(("given", "key"), [
    ("Llama3", "llama3:latest"), ("registry.ollama.ai/library/llama3:8B", "llama3:8b"),
    ("library/qwen2.5", "qwen2.5:latest"), ("me/model:v1", "me/model:v1"), ("registry.ollama.ai/me/m", "me/m:latest"),
    ("localhost:5000/m", "localhost:5000/m:latest")])
def test_names_match_as_ollama_matches_them(given, key):
    assert normalise(given) == key


def test_a_worker_finds_its_models_by_any_spelling_ollama_accepts():
    worker = SimWorker(models=parse_models("llama3.2:1b=1GiB,qwen=1GiB"))
    assert worker.find("LLAMA3.2:1B").name == "llama3.2:1b"
    assert worker.find("registry.ollama.ai/library/qwen").name == "qwen:latest"
    assert worker.find("llama3.2") is None, "no tag means :latest, which this worker lacks"


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("300s", 300.0), ("10m0s", 600.0), ("1.5h", 5400.0),
    ("250ms", 0.25), (60, 60.0), (2.5, 2.5), ("0", 0.0), (0, 0.0), (-1, math.inf), ("-1m", math.inf)])
def test_keep_alive_reads_go_durations_and_numbers_of_seconds(value, seconds):
    assert parse_keep_alive(value, 300.0) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("300", 'time: missing unit in duration "300"'), ("-1", 'time: missing unit in duration "-1"'),
    ("soon", 'time: invalid duration "soon"'), ("5 m", 'time: invalid duration "5 m"'),
    (True, "Unsupported type: 'bool'"), ([1], "Unsupported type: '[]interface {}'")])
def test_keep_alive_refuses_what_ollama_refuses_with_its_words(value, message):
    with pytest.raises(ValueError) as caught:
        parse_keep_alive(value, 300.0)
    assert str(caught.value) == message


def test_embedding_models_a_spec_names_embed_as_wide_as_the_real_ones():
    widths = {m.name: m.embedding_length for m in parse_models(
        "nomic-embed-text=0.27GiB,all-minilm:33m=0.06GiB,mxbai-embed-large:335m=0.6GiB,my-embed=0.1GiB,mine:1b=1GiB")}
    assert widths == {"nomic-embed-text:latest": 768, "all-minilm:33m": 384, "mxbai-embed-large:335m": 1024,
                      "my-embed:latest": 384, "mine:1b": 384}
    registry = default_registry()
    assert registry["nomic-embed-text:latest"].embedding_length == widths["nomic-embed-text:latest"]


def test_the_pull_registry_has_real_names_and_the_workers_own_models():
    registry = default_registry()
    assert {"llama3.2:1b", "llama3.1:8b", "qwen2.5:0.5b", "mistral:7b", "nomic-embed-text:latest",
            "all-minilm:latest"} <= set(registry)
    assert registry["llama3.2:1b"].size_bytes == int(1.3 * GIB)
    assert registry["nomic-embed-text:latest"].is_embedding and not registry["mistral:7b"].is_embedding
    worker = SimWorker(models=parse_models("mine:1b=1GiB"))
    assert "mine:1b" in worker.registry and "llama3.2:3b" in worker.registry
    only = SimWorker(models=parse_models("mine:1b=1GiB"), registry={"x:1b": SimModel("x:1b", GIB)})
    assert set(only.registry) == {"x:1b", "mine:1b"}
