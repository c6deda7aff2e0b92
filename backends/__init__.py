"""Wire formats of each worker kind. Imports nothing from gateway/."""

from backends.base import Backend, ModelEntry, Probe, ResidentModel
from backends.llamacpp import LlamaCppBackend
from backends.ollama import OllamaBackend
from backends.openai_compat import OpenAIBackend

_BACKENDS: dict[str, Backend] = {"ollama": OllamaBackend(), "llamacpp": LlamaCppBackend(), "openai": OpenAIBackend()}


def for_kind(kind: str) -> Backend:
    return _BACKENDS[kind]


__all__ = ["Backend", "ModelEntry", "Probe", "ResidentModel", "for_kind"]
