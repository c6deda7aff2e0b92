import pytest

from gateway.names import InvalidModelName, Names, canonical


@pytest.mark.parametrize(("given", "expected"), [
    ("llama3", "llama3:latest"),
    ("llama3:latest", "llama3:latest"),
    ("Llama3:8B", "llama3:8b"),
    ("  llama3:8b ", "llama3:8b"),
    ("registry.ollama.ai/library/llama3:8b", "llama3:8b"),
    ("library/llama3", "llama3:latest"),
    ("myuser/mymodel", "myuser/mymodel:latest"),
    ("localhost:5000/team/model", "localhost:5000/team/model:latest"),
    ("localhost:5000/team/model:v2", "localhost:5000/team/model:v2"),
    ("llama3@sha256:abc", "llama3:latest@sha256:abc"),
])
def test_canonical_matches_ollama_naming(given, expected):
    assert canonical(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "line\nbreak", ":tag", "\x7f"])
def test_canonical_rejects_names_no_worker_could_hold(bad):
    with pytest.raises(InvalidModelName):
        canonical(bad)


def test_aliases_resolve_to_their_model_and_are_normalised_both_ways():
    names = Names({"Default": "llama3.2:1b", "fast": "qwen2.5:0.5b"})
    assert names.resolve("default") == "llama3.2:1b"
    assert names.resolve("default:latest") == "llama3.2:1b"
    assert names.resolve("FAST") == "qwen2.5:0.5b"
    assert names.resolve("llama3") == "llama3:latest"
    assert names.is_alias("default") and not names.is_alias("llama3")
