"""The simulated worker's models: sizes, names as Ollama matches them, and the pull registry.

Pure values and parsers; no server and no state. Mirrors Ollama's naming (missing tag is
`:latest`, case-insensitive, default registry prefix ignored) without importing gateway/.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

GIB = 1024**3
_UNITS = {"b": 1, "kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2, "gib": GIB, "gb": 1000**3}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    """'1.3GiB' -> bytes; a bare number means GiB."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(match.group(1)), (match.group(2) or "gib").lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit in {text!r} (use GiB, MiB, GB, MB, KiB, B)")
    return int(number * _UNITS[unit])


def normalise(name: str) -> str:
    text = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"


def parse_keep_alive(value: object, default_s: float) -> float:
    """Ollama's keep_alive in seconds: number or Go duration; negative = forever (inf)."""
    if value is None or value == "":
        return default_s
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration or a number")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            match = re.fullmatch(r"(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", text)
            if not match:
                raise ValueError(f"time: invalid duration {text!r}") from None
            seconds = sum(float(n) * _DURATION_UNITS[u]
                          for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", match.group(2)))
            seconds = -seconds if match.group(1) else seconds
    return float("inf") if seconds < 0 else seconds


@dataclass(frozen=True, slots=True)
class SimModel:
    name: str
    size_bytes: int
    family: str = "llama"
    parameter_size: str = ""
    quantization_level: str = "Q4_K_M"
    context_length: int = 4096
    embedding_length: int = 384

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def is_embedding(self) -> bool:
        return self.family in ("bert", "nomic-bert") or "embed" in self.name or "minilm" in self.name

    @property
    def params(self) -> str:
        if self.parameter_size:
            return self.parameter_size
        match = re.search(r":(\d+(?:\.\d+)?[bm])", self.name)
        return match.group(1).upper() if match else f"{max(0.1, self.size_bytes / GIB / 0.6):.1f}B"


def model(name: str, size: str | int, **extra: object) -> SimModel:
    size_bytes = parse_size(size) if isinstance(size, str) else int(size)
    return SimModel(normalise(name), size_bytes, **extra)  # type: ignore[arg-type]


def parse_models(text: str) -> list[SimModel]:
    """'a:1b=1.3GiB,b:7b=4.1GiB' -> models."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, size = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"model spec must be NAME=SIZE, got {item!r}")
        out.append(model(name, size))
    return out


def default_registry() -> dict[str, SimModel]:
    """What `/api/pull` can fetch: a handful of real names with realistic sizes."""
    specs = [("llama3.2:1b", "1.3GiB"), ("llama3.2:3b", "2.0GiB"), ("llama3.1:8b", "4.9GiB"),
             ("qwen2.5:0.5b", "0.4GiB"), ("qwen2.5:7b", "4.7GiB"), ("mistral:7b", "4.1GiB"),
             ("gemma2:2b", "1.6GiB"), ("phi3:mini", "2.2GiB")]
    models = [model(n, s) for n, s in specs]
    models += [model("nomic-embed-text", "0.27GiB", family="nomic-bert", embedding_length=768),
               model("all-minilm", "0.045GiB", family="bert", embedding_length=384)]
    return {m.name: m for m in models}
