"""Model-name normalisation as Ollama does it, plus config aliases.

Pure: no I/O, no config loading. `canonical("Llama3")` == `canonical("llama3:latest")`.
The canonical form is lowercase `[host/][namespace/]model:tag` with Ollama's default
registry and namespace stripped, so names from clients and from workers compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.errors import clip

DEFAULT_TAG = "latest"
_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")
# Ollama's longest valid name (types/model/name.go) is 682 characters: scheme "https://", host 350,
# namespace, model, tag and digest 80 each, four separators. llama.cpp and OpenAI-compatible
# workers name models by alias or path; 1024 leaves them room. Checked before any other work, so
# a name of megabytes costs one len() and is never echoed whole.
MAX_NAME_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidModelName(ValueError):
    """A model name that no worker could ever hold (empty, whitespace, control characters, too long)."""


def canonical(name: str) -> str:
    """Normalise a model name the way Ollama compares them (case-insensitive, default tag)."""
    if len(name) > MAX_NAME_CHARS:
        raise InvalidModelName(f"invalid model name {clip(name, 64)!r}: longer than {MAX_NAME_CHARS} characters")
    text = name.strip().lower()
    if not text or _CONTROL.search(text):
        raise InvalidModelName(f"invalid model name {name!r}")
    for prefix in _DEFAULT_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    base, _, digest = text.partition("@")
    last = base.rsplit("/", 1)[-1]
    if ":" not in last:
        base = f"{base}:{DEFAULT_TAG}"
    if not base.rsplit("/", 1)[-1].split(":", 1)[0]:
        raise InvalidModelName(f"invalid model name {name!r}")
    return f"{base}@{digest}" if digest else base


class Names:
    """Resolves client-supplied names to canonical names, following config aliases."""

    __slots__ = ("_aliases",)

    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self._aliases = {canonical(a): canonical(t) for a, t in (aliases or {}).items()}

    def resolve(self, name: str) -> str:
        """The canonical name a request for `name` is served as."""
        key = canonical(name)
        return self._aliases.get(key, key)

    def is_alias(self, name: str) -> bool:
        return canonical(name) in self._aliases

    @property
    def aliases(self) -> Mapping[str, str]:
        return dict(self._aliases)
