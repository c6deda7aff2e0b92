"""Model-name normalisation as Ollama does it, plus config aliases.

Pure: no I/O, no config loading. `canonical("Llama3")` == `canonical("llama3:latest")`.
The canonical form is lowercase `[host/][namespace/]model:tag` with Ollama's default
registry and namespace stripped, so names from clients and from workers compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_TAG = "latest"
_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")


class InvalidModelName(ValueError):
    """A model name that no worker could ever hold (empty, whitespace, control characters)."""


def canonical(name: str) -> str:
    """Normalise a model name the way Ollama compares them (case-insensitive, default tag)."""
    text = name.strip().lower()
    if not text or any(ch < " " or ch == "\x7f" for ch in text):
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
