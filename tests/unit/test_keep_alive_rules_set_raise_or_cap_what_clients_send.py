"""gateway/keep_alive.govern: per model, the operator's rule decides the keep_alive a worker gets."""

import pytest

from gateway.config import ModelConfig
from gateway.keep_alive import govern


def test_min_raises_short_ones_and_unloads_and_max_caps_long_ones_and_forever():
    bounds = ModelConfig(min_keep_alive="5m", max_keep_alive="1h")
    cases = {0: ("5m", "min_keep_alive"), "0s": ("5m", "min_keep_alive"), 30: ("5m", "min_keep_alive"),
             "10m": ("10m", None), 3600: (3600, None), "2h": ("1h", "max_keep_alive"), -1: ("1h", "max_keep_alive"),
             "-1m": ("1h", "max_keep_alive")}
    for sent, (value, rule) in cases.items():
        governed = govern(bounds, sent)
        assert (governed.value, governed.rule, governed.sent) == (value, rule, sent), sent


def test_absent_or_unreadable_values_go_as_sent_and_request_keep_alive_sets_every_one():
    bounds = ModelConfig(min_keep_alive="5m")
    assert govern(bounds, None).value is None and govern(bounds, None).rule is None  # the worker's default
    assert govern(bounds, "soon").value == "soon"  # the worker refuses it, as Ollama would
    fixed = ModelConfig(request_keep_alive="30m")
    assert [govern(fixed, s).value for s in (None, 0, -1, "1m")] == ["30m"] * 4
    assert govern(fixed, "30m").rule is None and govern(None, 0).value == 0


def test_contradictory_rules_are_config_errors():
    with pytest.raises(ValueError, match="set one or the other"):
        ModelConfig(request_keep_alive="30m", min_keep_alive="5m")
    with pytest.raises(ValueError, match="longer than max_keep_alive"):
        ModelConfig(min_keep_alive="2h", max_keep_alive="1h")
    with pytest.raises(ValueError, match="longer than max_keep_alive"):
        ModelConfig(min_keep_alive=-1, max_keep_alive="1h")
    assert ModelConfig(min_keep_alive="5m", max_keep_alive=-1).max_keep_alive == -1
