"""[failover] held keys about degraded GPUs, the CPU tier and request sizing, and its timeouts also
bounded warm-ups and model management. Those have homes that say what they hold now ([degraded],
[cpu], [routing], [warmer], [manage]); the old names keep working for one release, setting both is
an error naming both, and check-config says where each went. Unknown keys stay errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from gateway.routes import BODY_ENDPOINTS, ROUTES, body_endpoint

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = '[[workers]]\nname = "gpu0"\nurl = "http://127.0.0.1:11435"\nkind = "ollama"\n'

# (old key in [failover], a value unlike the default, where it is read now, the new section and key)
MOVED = [
    ("degraded_rank", '"after_cpu"', lambda c: c.degraded.rank, "after_cpu", "[degraded] rank"),
    ("slow_decode_factor", "8", lambda c: c.degraded.slow_decode_factor, 8.0, "[degraded] slow_decode_factor"),
    ("degraded_s", "45", lambda c: c.degraded.slow_verdict_s, 45.0, "[degraded] slow_verdict_s"),
    ("cpu_max_expected_s", "90", lambda c: c.cpu.max_expected_s, 90.0, "[cpu] max_expected_s"),
    ("cpu_tokens_per_s", "7", lambda c: c.cpu.tokens_per_s, 7.0, "[cpu] tokens_per_s"),
    ("default_num_predict", "64", lambda c: c.routing.default_num_predict, 64, "[routing] default_num_predict"),
]


def parse(extra: str):
    return parse_config((MINIMAL + extra).encode())


def errors_of(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(extra)
    return info.value.errors


def check_config(tmp_path: Path, extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "beacon.toml"
    path.write_text(MINIMAL + extra)
    return subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_the_new_homes_start_at_the_values_the_old_keys_had():
    config = parse("")
    assert (config.degraded.rank, config.degraded.slow_decode_factor, config.degraded.slow_verdict_s) == (
        "before_cpu", 5.0, 15.0)
    assert (config.cpu.max_expected_s, config.cpu.tokens_per_s, config.routing.default_num_predict) == (30.0, 20.0, 256)
    assert config.warmer.timeout_s == config.failover.first_byte_timeout_s == 60.0
    manage = config.manage
    assert (manage.connect_timeout_s, manage.answer_timeout_s, manage.progress_idle_timeout_s) == (2.0, 60.0, 300.0)
    assert config.notices == ()


@pytest.mark.parametrize(("old", "value", "read", "expected", "new"), MOVED, ids=[m[0] for m in MOVED])
def test_an_old_key_name_sets_its_new_home_and_says_where_it_moved(old, value, read, expected, new):
    config = parse(f"[failover]\n{old} = {value}\n")
    assert read(config) == expected
    assert config.notices == (f"[failover] {old} has moved to {new}; the old name is accepted until the next release",)
    section, key = new.strip("[").split("] ")
    assert read(parse(f"[{section}]\n{key} = {value}\n")) == expected


def test_setting_a_moved_key_under_both_names_is_an_error_naming_both():
    problems = errors_of('[failover]\ndegraded_rank = "after_cpu"\ncpu_tokens_per_s = 5\n'
                         '[degraded]\nrank = "before_cpu"\n[cpu]\ntokens_per_s = 5\n')
    assert problems == [
        "failover.degraded_rank: has moved to degraded.rank, which is set too: keep only degraded.rank",
        "failover.cpu_tokens_per_s: has moved to cpu.tokens_per_s, which is set too: keep only cpu.tokens_per_s",
    ]


def test_the_both_set_error_comes_with_every_other_error_at_once():
    problems = errors_of("[failover]\ndegraded_s = 5\n[degraded]\nslow_verdict_s = 5\n[health]\ninterval_s = -1\n")
    assert len(problems) == 2 and problems[0].startswith("failover.degraded_s: has moved to degraded.slow_verdict_s")
    assert problems[1].startswith("health.interval_s:")


def test_a_bad_value_under_an_old_name_is_reported_under_that_name():
    problems = errors_of('[failover]\ndegraded_rank = "sideways"\nslow_decode_factor = 1\n')
    assert problems == ["failover.degraded_rank: Input should be 'before_cpu' or 'after_cpu'",
                        "failover.slow_decode_factor: Input should be greater than 1"]


def test_unknown_keys_stay_errors_in_the_old_and_the_new_sections():
    problems = errors_of("[failover]\ndegraded_rnak = 1\n[degraded]\ndegraded_s = 5\n[cpu]\ncpu_tokens_per_s = 5\n"
                         "[manage]\ntimeout_s = 5\n")
    assert sorted(p.split(":")[0] for p in problems) == ["cpu.cpu_tokens_per_s", "degraded.degraded_s",
                                                         "failover.degraded_rnak", "manage.timeout_s"]
    assert all("unknown key" in p for p in problems)


@pytest.mark.parametrize(("extra", "where"), [
    ('[degraded]\nrank = "never"\n', "degraded.rank"),
    ("[degraded]\nslow_decode_factor = 1\n", "degraded.slow_decode_factor"),
    ("[degraded]\nslow_verdict_s = 0\n", "degraded.slow_verdict_s"),
    ("[cpu]\nmax_expected_s = -1\n", "cpu.max_expected_s"),
    ("[cpu]\ntokens_per_s = 0\n", "cpu.tokens_per_s"),
    ("[routing]\ndefault_num_predict = 0\n", "routing.default_num_predict"),
    ("[warmer]\ntimeout_s = 0\n", "warmer.timeout_s"),
    ("[manage]\nconnect_timeout_s = 0\n", "manage.connect_timeout_s"),
    ('[manage]\nanswer_timeout_s = "long"\n', "manage.answer_timeout_s"),
    ("[manage]\nprogress_idle_timeout_s = -5\n", "manage.progress_idle_timeout_s"),
])
def test_the_new_sections_validate_their_values(extra, where):
    problems = errors_of(extra)
    assert len(problems) == 1 and problems[0].startswith(f"{where}: ")


def test_a_timeout_that_also_bounded_warm_ups_or_model_management_still_does_until_the_next_release():
    config = parse("[failover]\nfirst_byte_timeout_s = 120\nconnect_timeout_s = 5\nstream_idle_timeout_s = 400\n")
    assert (config.warmer.timeout_s, config.manage.connect_timeout_s, config.manage.progress_idle_timeout_s) == (
        120.0, 5.0, 400.0)
    assert config.notices[0] == ("[failover] first_byte_timeout_s = 120 also bounds warm-ups (and admin warm and "
                                 "unload) until the next release only; their own key is [warmer] timeout_s "
                                 "(default 60): set it to 120 to keep this")
    assert [n.split(" = ")[0] for n in config.notices] == ["[failover] first_byte_timeout_s",
                                                           "[failover] connect_timeout_s",
                                                           "[failover] stream_idle_timeout_s"]
    own = parse("[failover]\nfirst_byte_timeout_s = 120\n[warmer]\ntimeout_s = 30\n")
    assert own.warmer.timeout_s == 30.0 and own.notices == (), "the new key set: the old one bounds inference only"


def test_a_timeout_whose_value_changes_nothing_elsewhere_gives_no_notice():
    config = parse("[failover]\nfirst_byte_timeout_s = 60\nconnect_timeout_s = 2\nstream_idle_timeout_s = 10\n")
    assert config.notices == () and config.manage.progress_idle_timeout_s == 300.0  # it read max(idle, 300)


def test_check_config_prints_one_line_per_moved_key_and_still_passes(tmp_path):
    done = check_config(tmp_path, '[failover]\ndegraded_rank = "after_cpu"\ncpu_max_expected_s = 90\n'
                                  "max_attempts = 2\n")
    assert done.returncode == 0 and ": ok (1 workers" in done.stdout
    lines = done.stderr.strip().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "[failover] degraded_rank has moved to [degraded] rank; the old name is accepted until the next release",
        "[failover] cpu_max_expected_s has moved to [cpu] max_expected_s; the old name is accepted until the next "
        "release",
    ]


def test_check_config_refuses_a_key_set_under_both_names_and_is_silent_on_new_names(tmp_path):
    done = check_config(tmp_path, '[failover]\ndegraded_rank = "after_cpu"\n[degraded]\nrank = "after_cpu"\n')
    assert done.returncode == 2 and done.stderr.strip().endswith(
        "failover.degraded_rank: has moved to degraded.rank, which is set too: keep only degraded.rank")
    done = check_config(tmp_path, '[degraded]\nrank = "after_cpu"\n[cpu]\ntokens_per_s = 5\n')
    assert done.returncode == 0 and done.stderr == ""


def test_body_limit_keys_are_the_routes_that_read_a_body():
    from aiohttp import web

    from gateway import app

    served = web.Application()
    app._add_routes(served)
    takes_body = {r.resource.canonical for r in served.router.routes() if r.method in ("POST", "DELETE")}
    assert {body_endpoint(path) for path in takes_body} == set(BODY_ENDPOINTS)
    assert len(takes_body) == len([r for r in ROUTES if r.body]), "every route that reads a body has its key"
    assert body_endpoint("/api/blobs/sha256:00") == "blobs" and body_endpoint("/admin/workers/gpu0/warm") == "admin"
    assert body_endpoint("/api/tags") is None


def test_every_body_limit_key_is_accepted_and_any_other_is_refused_naming_the_known_ones():
    every = ", ".join(f'"{key}" = 1' for key in BODY_ENDPOINTS)
    assert set(parse(f"[server]\nbody_mib = {{ {every} }}\n").server.body_mib) == set(BODY_ENDPOINTS)
    problems = errors_of('[server]\nbody_mib = { tags = 1 }\n')
    assert problems == [f"server.body_mib.tags: unknown endpoint; known: {', '.join(BODY_ENDPOINTS)}"]
