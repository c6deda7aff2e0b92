"""The README's test command is the one CI runs, so the quickstart cannot drift from CI."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.MULTILINE).group(1)
    readme = (ROOT / "README.md").read_text()
    assert "```sh\nbash .ci/run\n```" in readme, "the quickstart's test command is CI's own script"
    assert f"`{command}`" in readme, "the full-suite command CI runs is listed in the test tiers"


def test_readme_quickstart_runs_the_demo():
    assert "pip install . && beacon-gateway demo" in (ROOT / "README.md").read_text()
