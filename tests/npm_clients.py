"""The npm `ollama` package (pinned), installed once into a cache folder outside the repository, and
the node and chromium executables, for the tests that drive the gateway from JavaScript.

`python3 -m tests.npm_clients` installs it (.ci/run does, so a fresh machine has it before the tests).
A test that needs something missing skips, or fails when CI_REQUIRE_BROWSER=1, as the status page's
browser test does: CI must not pass by skipping. Installs into a temporary sibling and renames it into
place, so an interrupted install never leaves a half-filled cache that later runs would trust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

OLLAMA_JS = "0.6.4"  # the npm `ollama` package; its browser build imports `whatwg-fetch`
CACHE = Path(os.environ.get("BEACON_NPM_CACHE", "~/.cache/beacon-gateway/npm")).expanduser()
INSTALL_HINT = "apt-get install -y nodejs npm chromium, then python3 -m tests.npm_clients (.ci/run does both)"


def node_modules() -> Path:
    """The folder holding `ollama` and `whatwg-fetch`, installed first if it is not there yet."""
    home = CACHE / f"ollama-{OLLAMA_JS}"
    if (home / "node_modules" / "ollama" / "package.json").exists():
        return home / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(f"npm is not installed ({INSTALL_HINT})")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".ollama-{OLLAMA_JS}-", dir=CACHE))
    try:
        subprocess.run([npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--ignore-scripts",
                        "--loglevel=error", f"ollama@{OLLAMA_JS}"], check=True, timeout=300,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users of a shared cache
        os.replace(staging, home)  # another run may have won the race: then its copy stays
    except OSError:
        if not (home / "node_modules" / "ollama").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home / "node_modules"


def need(what: str, why: str) -> None:
    if os.environ.get("CI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CI_REQUIRE_BROWSER=1 but {what}: {why}")
    pytest.skip(f"{what} ({why}); CI installs it and does not skip")


def require_node_modules() -> Path:
    try:
        return node_modules()
    except (OSError, subprocess.SubprocessError) as exc:
        output = getattr(exc, "output", b"") or b""
        need("the npm ollama package cannot be installed", f"{exc} {output.decode(errors='replace')[-500:]}")
        raise  # unreachable: need() fails or skips


def require_executable(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    need(f"{names[0]} is not installed", INSTALL_HINT)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    print(node_modules())
    sys.exit(0)
