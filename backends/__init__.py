"""Wire formats of each worker kind. Imports nothing from gateway/."""

from backends.base import Backend, ModelEntry, Probe, ResidentModel
from backends.ollama import OllamaBackend

_BACKENDS: dict[str, Backend] = {"ollama": OllamaBackend()}


def for_kind(kind: str) -> Backend:
    return _BACKENDS[kind]


__all__ = ["Backend", "ModelEntry", "Probe", "ResidentModel", "for_kind"]
