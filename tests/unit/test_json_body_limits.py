"""parse_object sizes a body up before parsing it: past `[server] max_json_containers` (`[` and `{`
bytes) or `max_json_items` (`,` bytes) it is a 413 naming the key; orjson's depth limit is a 400;
a body shorter than a limit is never counted for it."""

import pytest

from gateway.config import ServerConfig
from gateway.errors import BadRequest, PayloadTooLarge
from gateway.handlers.common import parse_object

SMALL = ServerConfig(max_json_containers=10, max_json_items=20)


def nested(depth: int) -> bytes:
    return b'{"model": "m", "format": ' + b"[" * depth + b"]" * depth + b"}"


def test_containers_past_the_limit_are_413_naming_the_key_and_at_the_limit_pass():
    assert parse_object(nested(9), server=SMALL)["model"] == "m"  # 9 arrays and the object: 10
    with pytest.raises(PayloadTooLarge) as refused:
        parse_object(nested(10), server=SMALL)
    assert "max_json_containers" in refused.value.message and "11" in refused.value.message


def test_items_past_the_limit_are_413_naming_the_key_brackets_and_commas_in_strings_count_too():
    items = b'{"model": "m", "context": [' + b",".join([b"0"] * 20) + b"]}"  # 19 + 1 commas
    assert parse_object(items, server=SMALL)["context"] == [0] * 20
    with pytest.raises(PayloadTooLarge) as refused:
        parse_object(items.replace(b"[0", b"[0,0"), server=SMALL)
    assert "max_json_items" in refused.value.message
    with pytest.raises(PayloadTooLarge):
        parse_object(b'{"prompt": "' + b"[" * 11 + b'"}', server=SMALL)


def test_nesting_past_orjsons_depth_is_a_400_and_defaults_apply_without_a_config():
    with pytest.raises(BadRequest) as refused:
        parse_object(nested(2000))
    assert refused.value.status == 400 and "depth" in refused.value.message
    with pytest.raises(PayloadTooLarge):
        parse_object(nested(ServerConfig().max_json_containers + 1))


def test_the_key_check_runs_for_the_path_it_is_given():
    assert parse_object(b'{"Model": "x"}') == {"Model": "x"}
    with pytest.raises(BadRequest):
        parse_object(b'{"Model": "x"}', "/api/chat")
