"""Load-time options: when a loaded copy serves a request without a reload (Ollama's needsReload, as
server/sched.go compares runner options), and the [models."X"] rules that fix or cap them."""

import pytest

from gateway.config import ConfigError, ModelConfig, parse_config
from gateway.load_options import NO_OPTIONS, LoadOptions, effective_ctx, govern, honours, read_options, reuses


def opts(**options) -> LoadOptions:
    return read_options(options)


def test_a_request_without_runner_options_reads_as_no_options():
    assert read_options(None) == read_options({"temperature": 0.1, "num_predict": 9}) == NO_OPTIONS
    assert read_options("not an object") == NO_OPTIONS


def test_options_read_as_ollama_reads_them_defaults_and_nulls_left_out():
    assert opts(num_ctx=8192.9) == LoadOptions(num_ctx=8192), "a JSON number is truncated, as Options.FromMap does"
    assert opts(num_ctx=None) == NO_OPTIONS, "FromMap skips a null"
    assert opts(num_thread=0, draft_num_predict=4) == NO_OPTIONS, "Ollama's defaults: the same as leaving them out"
    assert opts(num_gpu=-1) == opts(num_gpu=-7) == NO_OPTIONS, "a negative num_gpu lets Ollama place the layers"
    assert opts(num_batch=256, use_mmap=False, num_thread=8).others == (("num_batch", 256), ("use_mmap", False),
                                                                         ("num_thread", 8))


def test_both_automatic_contexts_match_and_an_explicit_one_matches_its_equal():
    assert reuses(NO_OPTIONS, NO_OPTIONS, 4096, None)
    assert reuses(opts(num_ctx=8192), opts(num_ctx=8192), 8192, None)
    assert not reuses(opts(num_ctx=8192), opts(num_ctx=4096), 4096, None)


def test_an_explicit_context_against_an_automatic_copy_is_compared_with_the_context_ollama_chose():
    assert reuses(opts(num_ctx=4096), NO_OPTIONS, 4096, None)
    assert not reuses(opts(num_ctx=8192), NO_OPTIONS, 4096, None)
    assert not reuses(opts(num_ctx=8192), NO_OPTIONS, None, None), "not probed yet: a reload is possible"


def test_no_num_ctx_against_a_copy_loaded_with_one_is_taken_to_differ():
    assert not reuses(NO_OPTIONS, opts(num_ctx=8192), 8192, None)


def test_a_copy_known_only_from_its_probe_was_loaded_with_the_workers_defaults():
    assert reuses(NO_OPTIONS, None, 32768, None)
    assert reuses(opts(num_ctx=32768), None, 32768, None) and not reuses(opts(num_ctx=8192), None, 32768, None)
    assert reuses(opts(num_ctx=8192), None, None, None), "nothing known, nothing compared: as before"
    assert not reuses(opts(num_batch=1024), None, 4096, None)


def test_num_ctx_is_compared_after_clamping_to_the_models_training_context():
    assert effective_ctx(131072, 8192) == 8192 and effective_ctx(1, None) == 4
    assert reuses(opts(num_ctx=131072), opts(num_ctx=8192), 8192, 8192)
    assert reuses(opts(num_ctx=65536), None, 8192, 8192)


def test_a_negative_or_absent_num_gpu_matches_any_copy_an_explicit_one_only_its_equal():
    loaded = opts(num_gpu=20)
    assert reuses(NO_OPTIONS, loaded, None, None) and reuses(opts(num_gpu=-1), loaded, None, None)
    assert reuses(opts(num_gpu=20), loaded, None, None)
    assert not reuses(opts(num_gpu=10), loaded, None, None) and not reuses(opts(num_gpu=0), NO_OPTIONS, None, None)


@pytest.mark.parametrize("key", ["num_batch", "main_gpu", "num_thread", "draft_num_predict"])
def test_every_other_runner_option_reloads_when_it_differs(key):
    assert not reuses(opts(**{key: 2}), NO_OPTIONS, 4096, None)
    assert not reuses(opts(**{key: 2}), opts(**{key: 3}), 4096, None)
    assert reuses(opts(**{key: 2}), opts(**{key: 2}), 4096, None)


def test_a_fixed_context_server_honours_what_fits_in_its_context():
    assert honours(NO_OPTIONS, 4096, None) and honours(opts(num_ctx=2048), 4096, None)
    assert not honours(opts(num_ctx=8192), 4096, None)
    assert honours(opts(num_ctx=8192, num_batch=64), 8192, None), "its other options are start flags"
    assert honours(opts(num_ctx=65536), 8192, 8192), "no model runs past its training context anyway"
    assert honours(opts(num_ctx=8192), None, None), "a server that does not say: served as before"


def model(**keys) -> ModelConfig:
    return ModelConfig(**keys)


def test_request_num_ctx_sets_every_requests_num_ctx_whatever_the_client_sent():
    fixed = model(request_num_ctx=8192)
    assert govern(fixed, {"num_ctx": 2048, "temperature": 0}).options == {"num_ctx": 8192, "temperature": 0}
    assert govern(fixed, None).options == {"num_ctx": 8192} and govern(fixed, None).rules == ("request_num_ctx",)
    assert govern(fixed, {"num_ctx": 8192}).rules == (), "already as fixed: nothing changed"


def test_max_num_ctx_caps_a_larger_num_ctx_and_leaves_the_rest_alone():
    capped = model(max_num_ctx=8192)
    assert govern(capped, {"num_ctx": 131072}).options == {"num_ctx": 8192}
    assert govern(capped, {"num_ctx": 131072}).sent_num_ctx == 131072
    assert govern(capped, {"num_ctx": 4096}).rules == () and govern(capped, {}).rules == ()
    assert govern(capped, {"num_ctx": "huge"}).rules == (), "not a number: the worker refuses it, loading nothing"


def test_strip_load_options_removes_the_other_runner_options_only():
    stripped = govern(model(strip_load_options=True), {"num_gpu": 0, "num_batch": 64, "num_ctx": 4096, "top_k": 5})
    assert stripped.options == {"num_ctx": 4096, "top_k": 5} and stripped.rules == ("strip_load_options",)


def test_options_that_are_not_an_object_are_left_for_the_worker_to_refuse():
    assert govern(model(request_num_ctx=8192), [1, 2]).options == [1, 2]


def test_request_num_ctx_and_max_num_ctx_together_are_a_config_error():
    text = b'[[workers]]\nname = "a"\nurl = "http://a:1"\n[models."m"]\nrequest_num_ctx = 8192\nmax_num_ctx = 4096\n'
    with pytest.raises(ConfigError, match="request_num_ctx"):
        parse_config(text)
    with pytest.raises(ConfigError, match="num_ctx"):
        parse_config(b'[[workers]]\nname = "a"\nurl = "http://a:1"\n[models."m"]\nmax_num_ctx = 2\n')
