import math

import pytest

from backends.sim.catalog import GIB, normalise, parse_keep_alive, parse_models, parse_size


@pytest.mark.parametrize(("text", "size"), [("1.3GiB", int(1.3 * GIB)), ("512MiB", 512 * 1024**2), ("2", 2 * GIB),
                                            ("1GB", 10**9), ("10 KiB", 10240), ("7B", 7)])
def test_sizes_parse_with_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "GiB", "1.2.3GiB", "5 parsecs"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_model_specs_get_ollama_names_and_parameter_sizes():
    models = parse_models("Llama3.2:1B=1.3GiB, qwen2.5=4.7GiB")
    assert [m.name for m in models] == ["llama3.2:1b", "qwen2.5:latest"]
    assert models[0].params == "1B" and models[0].digest.startswith("sha256:")
    with pytest.raises(ValueError):
        parse_models("no-size")


def test_names_match_as_ollama_matches_them():
    assert normalise("registry.ollama.ai/library/Llama3") == "llama3:latest"
    assert normalise("me/model:v1") == "me/model:v1"


@pytest.mark.parametrize(("value", "seconds"), [(None, 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("10m0s", 600.0),
                                                (60, 60.0), ("0", 0.0), (0, 0.0), ("-1", math.inf), (-1, math.inf)])
def test_keep_alive_reads_durations_and_numbers(value, seconds):
    assert parse_keep_alive(value, 300.0) == seconds


def test_keep_alive_refuses_nonsense():
    with pytest.raises(ValueError):
        parse_keep_alive("soon", 300.0)
