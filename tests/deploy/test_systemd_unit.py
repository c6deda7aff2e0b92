"""deploy/gateway.service: `systemd-analyze verify` (any warning fails: it flags unknown keys and bad
values; skipped where systemd is absent) and the hardening and reload settings the brief asks for."""

from __future__ import annotations

import configparser
import subprocess

import pytest

from tests.deploy.conftest import DEPLOY, require_tool

UNIT = DEPLOY / "gateway.service"


def unit() -> dict[str, dict[str, list[str]]]:
    parser = configparser.RawConfigParser(strict=False, dict_type=_MultiDict, empty_lines_in_values=False)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return {s: {k: v.split("\n") for k, v in parser.items(s)} for s in parser.sections()}


class _MultiDict(dict):
    """systemd allows a key more than once (SystemCallFilter=): keep every value, one a line."""

    def __setitem__(self, key, value):
        if key in self and isinstance(value, list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def test_hardening_and_reload_settings():
    service = unit()["Service"]
    one = {k: v[-1] for k, v in service.items()}
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["EnvironmentFile"] == "-/etc/beacon/env"
    assert one["ExecStart"].endswith("beacon-gateway serve")
    assert one.get("DynamicUser") == "yes" or one.get("User")
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
                       "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}.items():
        assert one.get(key) == value, key
    assert "@system-service" in service["SystemCallFilter"]
    assert one["RestartPreventExitStatus"] == "2"  # a bad config: restarting cannot help
    assert "BEACON_LISTEN=127.0.0.1:11434" in one["Environment"]


def test_systemd_analyze_verify_has_nothing_to_say(tmp_path):
    analyze = require_tool("systemd-analyze")
    text = UNIT.read_text().replace("/opt/beacon-gateway/bin/beacon-gateway", "/bin/true")
    copy = tmp_path / "beacon-gateway.service"  # verify wants the ExecStart binary to exist
    copy.write_text(text)
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    if out.returncode and "Failed to" in out.stderr and "bus" in out.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {out.stderr.strip()}")
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
