"""The simulated worker's models: the SimModel value, size and model-spec parsing, model names
as Ollama matches them, keep_alive parsing, and the catalogue `/api/pull` can fetch.

Pure values and parsers: no server, no state, no clock. Must not import gateway/.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace

GIB = 1024**3
BYTES_PER_PARAM = 0.6  # a Q4_K_M GGUF holds roughly 0.6 bytes per parameter
_SIZE_UNITS = {"b": 1, "kib": 1024, "kb": 1000, "mib": 1024**2, "mb": 1000**2, "gib": GIB, "gb": 1000**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")
_DEFAULT_PREFIXES = ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_PARAMS = re.compile(r"(\d+(?:\.\d+)?)([mb])", re.IGNORECASE)
# The vector length of the embedding models in Ollama's library whose tags all share one, for a model
# spec that names them; any other model gets SimModel's default (all-minilm's 384).
EMBEDDING_LENGTHS = {"nomic-embed-text": 768, "mxbai-embed-large": 1024, "all-minilm": 384, "bge-m3": 1024,
                     "bge-large": 1024, "snowflake-arctic-embed2": 1024}


def parse_size(text: str) -> int:
    """'1.3GiB' -> bytes. Units GiB, MiB, KiB, GB, MB, KB, B (any case); a bare number means GiB."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 1.3GiB, 512MiB, 2)")
    unit = (match.group(2) or "gib").lower()
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit in {text!r} (use GiB, MiB, KiB, GB, MB, KB or B)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def normalise(name: str) -> str:
    """The key Ollama matches a name by: lowercase, default registry/namespace dropped, `:latest`
    when no tag is given ("Llama3" and "registry.ollama.ai/library/llama3:latest" are one model)."""
    text = name.strip().lower()
    for prefix in _DEFAULT_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"


def parse_keep_alive(value: object, default_s: float) -> float:
    """Ollama's keep_alive in seconds, as its api.Duration decodes it: a JSON number is seconds,
    a string must be a Go duration ("5m", "1h30m", "0"); negative means forever (inf).
    Raises ValueError with Go's message for anything else (Ollama answers 400 with it)."""
    if value is None:
        return default_s
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{_go_type(value)}'")
    seconds = float(value) if not isinstance(value, str) else _go_duration(value)
    return math.inf if seconds < 0 else seconds


def _go_duration(text: str) -> float:
    """time.ParseDuration: a bare "0" is the only number allowed without a unit."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body or not re.fullmatch(f"(?:{_GO_PART.pattern})+", body):
        problem = "missing unit in" if re.fullmatch(r"\d+\.?\d*|\.\d+", body) else "invalid"
        raise ValueError(f'time: {problem} duration "{text}"')
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(body))
    return -seconds if text.startswith("-") else seconds


def _go_type(value: object) -> str:
    return {bool: "bool", list: "[]interface {}", dict: "map[string]interface {}"}.get(type(value), "unknown")


def _derive_parameter_size(name: str, size_bytes: int) -> str:
    """"1B" from a tag such as ":1b" or ":0.5b"; otherwise from the file size at Q4."""
    match = _PARAMS.fullmatch(name.rsplit(":", 1)[-1])
    if match:
        return match.group(1) + match.group(2).upper()
    params = size_bytes / BYTES_PER_PARAM
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{max(1, round(params / 1e6))}M"


def parameter_count(parameter_size: str, size_bytes: int) -> int:
    """'1B' -> 1_000_000_000, '137M' -> 137_000_000; falls back to the file size at Q4."""
    match = _PARAMS.fullmatch(parameter_size.strip())
    if not match:
        return int(size_bytes / BYTES_PER_PARAM)
    return int(float(match.group(1)) * (1e9 if match.group(2).lower() == "b" else 1e6))


@dataclass(frozen=True, slots=True)
class SimModel:
    """One model file. The name is stored normalised; parameter_size is derived when not given."""

    name: str
    size_bytes: int
    family: str = "llama"
    parameter_size: str = ""
    quantization_level: str = "Q4_K_M"
    context_length: int = 4096
    embedding_length: int = 384

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalise(self.name))
        if not self.parameter_size:
            object.__setattr__(self, "parameter_size", _derive_parameter_size(self.name, self.size_bytes))

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def is_embedding(self) -> bool:
        return self.family in ("bert", "nomic-bert") or "embed" in self.name or "minilm" in self.name

    @property
    def size_gib(self) -> float:
        return self.size_bytes / GIB


def parse_models(text: str) -> list[SimModel]:
    """'a:1b=1.3GiB,b:7b=4.1GiB' -> models; a name without a tag gets `:latest`, and an embedding
    model of Ollama's library its real vector length (EMBEDDING_LENGTHS)."""
    models = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, size = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"model spec must be NAME=SIZE (e.g. llama3.2:1b=1.3GiB), got {item!r}")
        model = SimModel(name, parse_size(size))
        width = EMBEDDING_LENGTHS.get(model.name.rpartition(":")[0])
        models.append(model if width is None else replace(model, embedding_length=width))
    return models


def default_registry() -> dict[str, SimModel]:
    """What `/api/pull` can fetch by default: real names with realistic sizes."""
    chat = [("llama3.2:1b", "1.3GiB", "1.2B"), ("llama3.2:3b", "2.0GiB", "3.2B"), ("llama3.1:8b", "4.9GiB", "8.0B"),
            ("qwen2.5:0.5b", "0.4GiB", "494.03M"), ("qwen2.5:7b", "4.7GiB", "7.6B"), ("mistral:7b", "4.1GiB", "7.2B"),
            ("gemma2:2b", "1.6GiB", "2.6B"), ("phi3:mini", "2.2GiB", "3.8B")]
    families = {"qwen2.5": "qwen2", "gemma2": "gemma2", "phi3": "phi3"}
    models = [SimModel(n, parse_size(s), family=families.get(n.split(":")[0], "llama"), parameter_size=p,
                       context_length=8192, embedding_length=2048) for n, s, p in chat]
    models += [SimModel("nomic-embed-text", parse_size("0.27GiB"), family="nomic-bert", parameter_size="137M",
                        quantization_level="F16", context_length=2048, embedding_length=768),
               SimModel("all-minilm", parse_size("0.045GiB"), family="bert", parameter_size="23M",
                        quantization_level="F16", context_length=512, embedding_length=384)]
    return {m.name: m for m in models}
