import pytest

from gateway.names import MAX_NAME_CHARS, InvalidModelName, Names, canonical


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


def test_a_name_longer_than_any_worker_holds_is_refused_by_its_length_and_never_echoed_whole():
    longest_ollama = "https://" + "h" * 350 + "/" + "n" * 80 + "/" + "m" * 80 + ":" + "t" * 80  # 600 characters
    assert canonical(longest_ollama).startswith("https://")
    assert canonical("m" * MAX_NAME_CHARS) == "m" * MAX_NAME_CHARS + ":latest"
    with pytest.raises(InvalidModelName) as refused:
        canonical("m" * 16_000_000)
    assert len(str(refused.value)) < 200 and "16000000 characters" in str(refused.value)
