"""Load-time options: the runner options of a request, whether a loaded copy serves them without a
reload, and the operators' rules that fix or cap what clients send.

Ollama reloads a loaded model when a request's runner options differ from the loaded runner's
(server/sched.go, `needsReload`): `num_ctx` compared after clamping to the model's training
context (two requests that both leave it to Ollama's automatic choice match), `num_batch`,
`num_gpu` (a negative value, Ollama's default, matches any), `main_gpu`, `use_mmap`, `num_thread`,
`draft_num_predict`. A server holds one copy of a model, so the copy has one option set: that of
the last request sent to it (any other set reloads it), else what `/api/ps` says (`context_length`).
A llama.cpp server's context is a start flag: a request is honoured there when its `num_ctx`
fits in the server's, and reloads nothing either way.

Per model, `[models."X"]` may fix `num_ctx` (`request_num_ctx`), cap it (`max_num_ctx`) and
strip the other load-time options (`strip_load_options`) before a worker sees the request, so
clients cannot make a worker reload. Pure: no I/O; only fixed keys of a client's options are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import ModelConfig
from gateway.keep_alive import model_settings
from gateway.state import Snapshot

OTHERS = ("num_batch", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
RUNNER = ("num_ctx", "num_gpu", *OTHERS)
_DEFAULTS = {"num_thread": 0, "draft_num_predict": 4}  # api.DefaultOptions: the same as leaving them out
_MIN_CTX = 4  # Ollama's getRunner raises a smaller num_ctx to 4


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """A request's runner options as Ollama compares them. `num_ctx` None: left to the worker
    (Ollama's automatic context); `num_gpu` None: absent or negative, which any copy serves;
    `others`: the rest as sent, sorted, those equal to Ollama's defaults left out."""

    num_ctx: int | None = None
    num_gpu: int | None = None
    others: tuple[tuple[str, int | bool], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """What explain and the logs show: only the options set."""
        shown: dict[str, Any] = {"num_ctx": self.num_ctx, "num_gpu": self.num_gpu, **dict(self.others)}
        return {k: v for k, v in shown.items() if v is not None}


NO_OPTIONS = LoadOptions()


def _integer(value: object) -> int | None:
    """An integer option as Ollama's Options.FromMap reads it (JSON numbers truncated); anything
    else is None: null is skipped, and a worker refuses other types before it loads anything."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def read_options(options: object) -> LoadOptions:
    """The load-time options of a request's `options` object (an Ollama API request's)."""
    if not isinstance(options, dict) or not any(k in options for k in RUNNER):
        return NO_OPTIONS
    num_gpu = _integer(options.get("num_gpu"))
    others = []
    for key in OTHERS:
        raw = options.get(key)
        value = raw if key == "use_mmap" and isinstance(raw, bool) else None if key == "use_mmap" else _integer(raw)
        if value is not None and value != _DEFAULTS.get(key):
            others.append((key, value))
    return LoadOptions(_integer(options.get("num_ctx")), num_gpu if num_gpu is not None and num_gpu >= 0 else None,
                       tuple(others))


def effective_ctx(num_ctx: int, train_ctx: int | None) -> int:
    """The context a runner gets for an explicit num_ctx: at least 4, at most the model's training context."""
    ctx = max(_MIN_CTX, num_ctx)
    return min(ctx, train_ctx) if train_ctx else ctx


def reuses(asked: LoadOptions, sent: LoadOptions | None, probed_ctx: int | None, train_ctx: int | None) -> bool:
    """Whether an Ollama copy serves `asked` without a reload. `sent`: the options of the last request
    the gateway sent it, None when the copy is known only from /api/ps (taken as loaded with the
    worker's defaults); `probed_ctx`: its /api/ps context_length, None when not reported. A copy
    nothing is known of serves anything, as before the gateway compared options."""
    copy = sent or NO_OPTIONS
    if asked.others != copy.others or (asked.num_gpu is not None and asked.num_gpu != copy.num_gpu):
        return False
    if asked.num_ctx is None:  # both automatic match; automatic against an explicit one: the worker's default
        return copy.num_ctx is None  # is not known here, so they are taken to differ
    want = effective_ctx(asked.num_ctx, train_ctx)
    if copy.num_ctx is not None:
        return effective_ctx(copy.num_ctx, train_ctx) == want
    if probed_ctx is not None:  # an automatic copy: the context Ollama chose for it
        return probed_ctx == want
    return sent is None


def honours(asked: LoadOptions, server_ctx: int | None, train_ctx: int | None) -> bool:
    """Whether a fixed-context server (llama.cpp's -c, an OpenAI-compatible server's) fits the
    context `asked`; the other load-time options are its start flags and never reload it."""
    if asked.num_ctx is None or not server_ctx:
        return True
    return server_ctx >= effective_ctx(asked.num_ctx, train_ctx)


def train_ctx(snap: Snapshot, model: str) -> int | None:
    """The model's training context, from /api/show model_info, when a probe learned it."""
    shape = snap.shapes.get(model)
    return shape.context_length if shape is not None and shape.context_length else None


# -- the operators' rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Governed:
    """The `options` a worker gets, the num_ctx the client sent, and the rules that changed them."""

    options: object
    sent_num_ctx: object
    rules: tuple[str, ...] = ()


def govern(config: ModelConfig | None, options: object) -> Governed:
    """What a request's `options` become under a model's `[models."X"]` rules. Options that are not
    an object are left for the worker to refuse (it loads nothing then)."""
    sent = options.get("num_ctx") if isinstance(options, dict) else None
    if config is None or options is not None and not isinstance(options, dict):
        return Governed(options, sent)
    out, rules = dict(options or {}), []
    if config.strip_load_options and any(k in out for k in ("num_gpu", *OTHERS)):
        for key in ("num_gpu", *OTHERS):
            out.pop(key, None)
        rules.append("strip_load_options")
    if config.request_num_ctx is not None and sent != config.request_num_ctx:
        out["num_ctx"] = config.request_num_ctx
        rules.append("request_num_ctx")
    elif config.max_num_ctx is not None and (asked := _integer(sent)) is not None and asked > config.max_num_ctx:
        out["num_ctx"] = config.max_num_ctx
        rules.append("max_num_ctx")
    return Governed(out if rules else options, sent, tuple(rules))


def governed_options(snap: Snapshot, model: str, data: dict) -> Governed | None:
    """For an Ollama request body of `model`: the rules that change its options (the body is
    changed in place), or None when its options go as sent."""
    governed = govern(model_settings(snap, model), data.get("options"))
    if not governed.rules:
        return None
    data["options"] = governed.options
    return governed
