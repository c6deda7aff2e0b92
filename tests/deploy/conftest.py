"""Shared helpers for the deploy/ checks: paths, YAML loading, and the tools CI must have."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def setting_env_names() -> set[str]:
    """The environment variables gateway/settings.py reads. Settings ignore unknown BEACON_*
    variables (Kubernetes adds its own for every Service), so a misspelt one in deploy/ would be
    dropped without a word: the deploy tests hold every BEACON_* name to this set."""
    from gateway.settings import Settings

    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias  # an alias is read as it is, without the BEACON_ prefix
        choices = getattr(alias, "choices", [alias]) if alias else ["BEACON_" + name]
        names.update(choice.upper() for choice in choices if isinstance(choice, str))
    return names


def load_yaml_docs(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def require_tool(name: str) -> str:
    """The tool's path; skip without it, but fail when CI_REQUIRE_TOOLS=1 (.ci/run sets it)."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (Debian: apt-get install prometheus)" if name == "promtool" else \
        f"{name} is not installed"
    if os.environ.get("CI_REQUIRE_TOOLS") == "1":
        pytest.fail(message + "; CI_REQUIRE_TOOLS=1 requires it")
    pytest.skip(message)
