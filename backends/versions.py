"""Whether a worker's reported version is at least the release that added something (a front API it
serves natively). Pure: reads the version string a probe brought back, nothing else.

Unknown is never new enough: None, "0.0.0" (what a source build of Ollama reports), and anything that
does not start with numbers all mean "do not count on it", so callers fall back to what every version
has (translating to /v1/chat/completions). A pre-release of the minimum ("0.14.0-rc1" for "0.14.0")
counts as older, as semantic versioning orders it: a safe answer, since translation works everywhere.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"v?(\d{1,6})\.(\d{1,6})(?:\.(\d{1,6}))?(-?[0-9A-Za-z.+-]*)")


def parse(version: str | None) -> tuple[tuple[int, int, int], bool] | None:
    """(major, minor, patch) and whether it is a pre-release; None when unknown or unparsable."""
    if not version:
        return None
    found = _VERSION.fullmatch(version.strip()[:64])
    if found is None:
        return None
    numbers = (int(found[1]), int(found[2]), int(found[3] or 0))
    if numbers == (0, 0, 0):
        return None
    return numbers, found[4].startswith("-")


def at_least(version: str | None, minimum: str) -> bool:
    """Whether `version` is known to be `minimum` (a plain "X.Y.Z") or later."""
    have, wanted = parse(version), parse(minimum)
    if have is None or wanted is None:
        return False
    (numbers, pre), (floor, _) = have, wanted
    return numbers > floor or (numbers == floor and not pre)
