"""A client key's model patterns: wildcards match within one `/` part of a name, never across."""

import pytest

from gateway.access import name_matches


@pytest.mark.parametrize("model,pattern", [
    ("qwen2.5:7b", "qwen*"), ("llama3.2:1b", "llama3.2:*"), ("team/coder:7b", "team/*"),
    ("registry.example.com/team/m:1", "registry.example.com/team/*"), ("m:latest", "m:latest"),
])
def test_patterns_match_names_of_the_same_shape(model, pattern):
    assert name_matches(model, pattern)


@pytest.mark.parametrize("model,pattern", [
    ("qwen.evil.com/ns/model:latest", "qwen*"),  # a pull from another registry host
    ("team/sub/m:1", "team/*"), ("other/qwen:1", "qwen*"), ("llama3.2:1b", "llama3.1:*"),
])
def test_wildcards_never_cross_a_slash(model, pattern):
    assert not name_matches(model, pattern)
