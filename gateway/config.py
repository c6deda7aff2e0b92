"""The routing config: schema (pydantic, unknown keys are errors) and load_config(path).

Start-up, hot reload and `check-config` share this one path and one set of messages.
Every problem is reported with its key path (`workers[1].url: ...`), all at once. Keys that moved
are accepted under their old names for one release (config_moves.py), each with a notice.
No network, no side effects beyond reading the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from gateway.config_moves import Adopted, adopt_old_keys
from gateway.names import InvalidModelName, canonical
from gateway.routes import BODY_ENDPOINTS

SUPPORTED_KINDS = ("ollama", "llamacpp", "openai")
TIERS = ("gpu", "cpu")

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the url without `user:password@`, their Basic Authorization value or None), as aiohttp
    would send them; RFC 7617's UTF-8 rather than aiohttp's latin-1, so any password works."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def redact_url(text: str) -> str:
    """`text` with any `user:password@` replaced by `***@`: for messages that must name a URL."""
    return re.sub(r"(^|//)[^/@]*@", r"\1***@", text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerConfig(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    url: str
    kind: str
    tier: Literal["gpu", "cpu"] = "gpu"
    vram_gib: PositiveFloat | None = None
    gpu_index: Annotated[int, Field(ge=0)] | None = None
    max_inflight: PositiveInt | None = None
    models: dict[str, str] = {}
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    forward_client_auth: bool = False  # pass the client's own Authorization header on (when no api_key_env)
    # `user:password@` from the url, as a Basic Authorization value. Kept out of `url` so that no page,
    # log line, error or exception (aiohttp's name the URL) can show it; private, so never in a repr.
    _basic_auth: str | None = PrivateAttr(default=None)

    def auth_headers(self) -> dict[str, str]:
        """The worker's credentials, read from the environment at use: never stored or logged."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            return {"Authorization": f"Bearer {key}"}
        return {"Authorization": self._basic_auth} if self._basic_auth else {}

    @property
    def url_had_credentials(self) -> bool:
        return self._basic_auth is not None

    @model_validator(mode="wrap")
    @classmethod
    def _credentials_out_of_url(cls, data: Any, handler: Any) -> WorkerConfig:
        basic = None
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            url, basic = split_credentials(data["url"])
            data = {**data, "url": url}
        worker = handler(data)
        worker._basic_auth = basic
        return worker

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {redact_url(value)!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in SUPPORTED_KINDS:
            raise ValueError(f"unsupported worker kind {value!r}; supported: {', '.join(SUPPORTED_KINDS)}")
        return value


class ModelConfig(_Strict):
    aliases: list[str] = []
    vram_gib: PositiveFloat | None = None
    pull_to: list[str] = []
    keep_warm: Annotated[int, Field(ge=0)] = 0
    keep_alive: str | int | float | None = None
    pin: list[str] = []
    # What clients' keep_alive becomes (gateway/keep_alive.py): set it, or raise / cap it.
    request_keep_alive: str | int | float | None = None
    min_keep_alive: str | int | float | None = None
    max_keep_alive: str | int | float | None = None
    # What clients' load-time options become (gateway/load_options.py): a different set reloads the copy.
    request_num_ctx: Annotated[int, Field(ge=4)] | None = None
    max_num_ctx: Annotated[int, Field(ge=4)] | None = None
    strip_load_options: bool = False

    @field_validator("keep_alive", "request_keep_alive", "min_keep_alive", "max_keep_alive")
    @classmethod
    def _duration(cls, value: str | int | float | None) -> str | int | float | None:
        if isinstance(value, str):
            parse_duration_s(value)
            try:  # Ollama refuses a unitless string ("300": missing unit); send it as a number
                number = float(value)
            except ValueError:
                return value
            return int(number) if number.is_integer() else number
        return value

    @model_validator(mode="after")
    def _keep_alive_rules(self) -> ModelConfig:
        if self.request_keep_alive is not None and (self.min_keep_alive is not None
                                                    or self.max_keep_alive is not None):
            raise ValueError("request_keep_alive sets every request's keep_alive: min_keep_alive and "
                             "max_keep_alive would never apply; set one or the other")
        if self.min_keep_alive is not None and self.max_keep_alive is not None:
            low, high = parse_duration_s(self.min_keep_alive), parse_duration_s(self.max_keep_alive)
            if (high >= 0 and (low < 0 or low > high)):
                raise ValueError("min_keep_alive is longer than max_keep_alive")
        if self.request_num_ctx is not None and self.max_num_ctx is not None:
            raise ValueError("request_num_ctx sets every request's num_ctx: max_num_ctx would never apply; "
                             "set one or the other")
        return self


class RoutingPolicy(_Strict):
    load_gib_per_s: PositiveFloat = 2.0
    load_fixed_s: Annotated[float, Field(ge=0)] = 1.0
    affinity: bool = True
    kv_context: PositiveInt = 4096
    default_num_predict: PositiveInt = 256  # tokens planned for a request that does not set num_predict


class AdmissionConfig(_Strict):
    max_queue: Annotated[int, Field(ge=0)] = 64
    queue_timeout_s: PositiveFloat = 30.0
    fair_share: bool = True  # a busy model's queue shared by client key (weight, priority); false: one FIFO line


class WarmerConfig(_Strict):
    interval_s: PositiveFloat = 10.0
    concurrency: PositiveInt = 2
    demand_window_s: PositiveFloat = 300.0
    rearm_before_s: PositiveFloat = 60.0
    timeout_s: PositiveFloat = 60.0  # one warm-up or unload (the warmer's and the admin API's)


class HealthConfig(_Strict):
    interval_s: PositiveFloat = 2.0
    timeout_s: PositiveFloat = 2.0
    unhealthy_threshold: PositiveInt = 3
    healthy_threshold: PositiveInt = 2
    max_probe_kib: PositiveInt = 4096  # any one control-plane read: probe, warm-up, model metadata
    concurrency: PositiveInt = 64  # probes in flight at once
    jitter_s: Annotated[float, Field(ge=0)] = 0.25  # a round's probes start spread over this much
    listing_interval_s: PositiveFloat = 30.0  # disk listing and version re-read at least this often

    @property
    def max_probe_bytes(self) -> int:
        return self.max_probe_kib * 1024


class FailoverConfig(_Strict):
    connect_timeout_s: PositiveFloat = 2.0
    first_byte_timeout_s: PositiveFloat = 60.0
    gpu_first_byte_timeout_s: PositiveFloat | None = None
    cpu_first_byte_timeout_s: PositiveFloat | None = None
    stream_idle_timeout_s: PositiveFloat = 30.0
    max_attempts: PositiveInt = 3
    retry_budget_ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    retry_budget_min_per_s: Annotated[float, Field(ge=0)] = 5.0

    def first_byte_s(self, tier: str) -> float:
        override = self.gpu_first_byte_timeout_s if tier == "gpu" else self.cpu_first_byte_timeout_s
        return override or self.first_byte_timeout_s


class DegradedConfig(_Strict):
    """When a GPU worker counts as degraded by its decode rate, for how long, and where degraded ones rank."""

    rank: Literal["before_cpu", "after_cpu"] = "before_cpu"
    slow_decode_factor: Annotated[float, Field(gt=1)] = 5.0
    slow_verdict_s: PositiveFloat = 15.0  # a slow-decode verdict holds this long, then the worker is trusted again


class CpuConfig(_Strict):
    """What the CPU tier takes: requests it can finish within max_expected_s at its rate."""

    max_expected_s: PositiveFloat = 30.0
    tokens_per_s: PositiveFloat = 20.0  # a worker's decode rate until measured


class ManageConfig(_Strict):
    """Timeouts of model management sent to many workers: pull, push, create, copy, delete, blobs."""

    connect_timeout_s: PositiveFloat = 2.0
    answer_timeout_s: PositiveFloat = 60.0  # copy, delete, blob check: the longest silence of an answer
    progress_idle_timeout_s: PositiveFloat = 300.0  # pull, push, create progress and blob uploads


class OutlierConfig(_Strict):
    consecutive_failures: PositiveInt = 3
    eject_s: PositiveFloat = 30.0
    max_eject_s: PositiveFloat = 300.0
    max_ejected_share: Annotated[float, Field(ge=0, le=1)] = 0.5


class ClientConfig(_Strict):
    """An application allowed in when keys are required; its key is stored only as a SHA-256."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    models: list[str] = []  # model names or shell-style patterns ("qwen*"); empty: every model
    max_concurrent: Annotated[int, Field(ge=0)] = 0  # 0: no cap
    requests_per_minute: Annotated[int, Field(ge=0)] = 0  # 0: no cap
    manage: bool = False  # may pull, push, create, copy and delete models
    weight: PositiveFloat = 1.0  # its share of a busy model's freed slots, against the other keys waiting
    priority: Literal["interactive", "batch"] = "interactive"  # batch: only what interactive requests leave


class ServerConfig(_Strict):
    max_body_mib: PositiveFloat = 64.0
    body_mib: dict[str, PositiveFloat] = {}  # per endpoint, over max_body_mib
    body_timeout_s: PositiveFloat = 60.0
    max_json_containers: PositiveInt = 100_000  # `[` and `{` bytes in a JSON body, strings included
    max_json_items: PositiveInt = 1_000_000  # `,` bytes in a JSON body, strings included
    blob_timeout_s: PositiveFloat = 3600.0  # a whole blob upload; body_timeout_s is its longest pause
    ps_fresh_s: Annotated[float, Field(ge=0)] = 1.0  # /api/ps re-probes a worker only past this age
    max_stream_s: PositiveFloat = 1800.0
    max_answer_s: PositiveFloat = 600.0  # a non-streamed answer, sent to last byte, on one worker
    max_answer_mib: PositiveFloat = 64.0  # a non-streamed answer's size
    retry_after_s: PositiveInt = 2
    config_poll_s: Annotated[float, Field(ge=0)] = 2.0  # 0: reload on SIGHUP or /admin/reload only

    @property
    def max_answer_bytes(self) -> int:
        return int(self.max_answer_mib * 1024 * 1024)


class RoutingConfig(_Strict):
    workers: Annotated[list[WorkerConfig], Field(min_length=1)]
    models: dict[str, ModelConfig] = {}
    health: HealthConfig = HealthConfig()
    failover: FailoverConfig = FailoverConfig()
    degraded: DegradedConfig = DegradedConfig()
    cpu: CpuConfig = CpuConfig()
    outlier: OutlierConfig = OutlierConfig()
    server: ServerConfig = ServerConfig()
    routing: RoutingPolicy = RoutingPolicy()
    admission: AdmissionConfig = AdmissionConfig()
    warmer: WarmerConfig = WarmerConfig()
    manage: ManageConfig = ManageConfig()
    clients: list[ClientConfig] = []
    _version: str = PrivateAttr(default="")
    _notices: tuple[str, ...] = PrivateAttr(default=())

    @property
    def version(self) -> str:
        """A short hash of the file's bytes: tells operators which config is live."""
        return self._version

    @property
    def notices(self) -> tuple[str, ...]:
        """One line per old key still in use, saying where it went (check-config prints them; the gateway
        logs them at start and on every reload)."""
        return self._notices

    def worker(self, name: str) -> WorkerConfig | None:
        return next((w for w in self.workers if w.name == name), None)

    def aliases(self) -> dict[str, str]:
        return {alias: name for name, model in self.models.items() for alias in model.aliases}

    def model(self, canonical_name: str) -> ModelConfig | None:
        for name, model in self.models.items():
            if canonical(name) == canonical_name:
                return model
        return None


class ConfigError(Exception):
    """Every problem found in a config file, one human-readable line each."""

    def __init__(self, path: str | Path, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: {len(errors)} error(s): " + "; ".join(errors))


def load_or_report(path: str | Path) -> RoutingConfig | None:
    """The config at `path`, or None after printing every error (one a line, key path first) to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"{exc.path}: {line}", file=sys.stderr)
        return None


def load_config(path: str | Path) -> RoutingConfig:
    """Read, parse and validate a routing config file; raise ConfigError with every problem."""
    try:
        raw_bytes = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read config file: {exc.strerror or exc}"]) from None
    return parse_config(raw_bytes, path)


def parse_config(raw_bytes: bytes, path: str | Path = "<config>") -> RoutingConfig:
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, ["config file is not valid UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax: {exc}"]) from None
    adopted = adopt_old_keys(data, _default_of)
    try:
        config = RoutingConfig.model_validate(adopted.data)
    except ValidationError as exc:
        raise ConfigError(path, adopted.problems + [_format_error(e, adopted) for e in exc.errors()]) from None
    problems = adopted.problems + _cross_checks(config)
    if problems:
        raise ConfigError(path, problems)
    config._version = hashlib.sha256(raw_bytes).hexdigest()[:12]
    config._notices = tuple(adopted.notices)
    return config


def _default_of(key: tuple[str, str]) -> Any:
    section, name = key
    model = RoutingConfig.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)  # every section is a model of its own
    return model.model_fields[name].default


def key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out in ("models",):
            out += f'."{part}"'
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_error(error: ErrorDetails, adopted: Adopted) -> str:
    """One line for one schema error; a moved key's value is named by the old key the file set."""
    loc, message = tuple(error["loc"]), error["msg"]
    head = (str(loc[0]), str(loc[1])) if len(loc) >= 2 else None
    if head in adopted.renamed:
        loc = adopted.renamed[head] + loc[2:]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see config.example.toml)"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{key_path(loc)}: {message}"


def _cross_checks(config: RoutingConfig) -> list[str]:
    """Rules that span keys: unique names, aliases that resolve to one model, pull targets."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, worker in enumerate(config.workers):
        if worker.name in seen:
            first = seen[worker.name]
            problems.append(f"workers[{i}].name: duplicate worker name {worker.name!r} (also workers[{first}])")
        seen.setdefault(worker.name, i)
        problems += _check_credentials(i, worker)
    owners: dict[str, str] = {}
    for name in config.models:
        try:
            key = canonical(name)
        except InvalidModelName as exc:
            problems.append(f'models."{name}": {exc}')
            continue
        if key in owners:
            problems.append(f'models."{name}": same model as models."{owners[key]}" ({key})')
        owners.setdefault(key, name)
    for name, model in config.models.items():
        problems += _check_model(name, model, owners, config)
    return problems + _check_clients(config)


def _check_credentials(i: int, worker: WorkerConfig) -> list[str]:
    """A worker gets one Authorization header: `user:password@` in its url, api_key_env and
    forward_client_auth each set one, and two at once would leave it to chance which the worker reads
    (aiohttp itself refuses the pair, which made every request to such a worker a 500)."""
    problems = []
    if worker.url_had_credentials and worker.api_key_env:
        problems.append(f"workers[{i}].url: carries user:password@ and api_key_env is set too; a worker takes "
                        "one credential: keep api_key_env and drop user:password@ from the url, or the reverse")
    if worker.url_had_credentials and worker.forward_client_auth:
        problems.append(f"workers[{i}].url: carries user:password@ and forward_client_auth is on; a worker takes "
                        "one credential: drop one of them")
    return problems


def _check_clients(config: RoutingConfig) -> list[str]:
    problems = [f"server.body_mib.{key}: unknown endpoint; known: {', '.join(BODY_ENDPOINTS)}"
                for key in config.server.body_mib if key not in BODY_ENDPOINTS]
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, client in enumerate(config.clients):
        if client.name in names:
            problems.append(f"clients[{i}].name: duplicate client name {client.name!r} "
                            f"(also clients[{names[client.name]}])")
        if client.key_sha256 in keys:
            problems.append(f"clients[{i}].key_sha256: same key as clients[{keys[client.key_sha256]}]")
        names.setdefault(client.name, i)
        keys.setdefault(client.key_sha256, i)
    return problems


def _check_model(name: str, model: ModelConfig, owners: dict[str, str], config: RoutingConfig) -> list[str]:
    problems: list[str] = []
    where = f'models."{name}"'
    for j, alias in enumerate(model.aliases):
        try:
            key = canonical(alias)
        except InvalidModelName as exc:
            problems.append(f"{where}.aliases[{j}]: {exc}")
            continue
        owner = owners.get(key)
        if owner is not None and owner != name:
            problems.append(f"{where}.aliases[{j}]: {alias!r} already names model {owner!r}")
        owners[key] = name
    names = {w.name: w.kind for w in config.workers}
    for j, target in enumerate(model.pull_to):
        if target not in TIERS and target not in names:
            problems.append(f"{where}.pull_to[{j}]: {target!r} is neither a tier (gpu, cpu) nor a worker name")
        elif names.get(target, "ollama") != "ollama":
            problems.append(f"{where}.pull_to[{j}]: {target!r} is a {names[target]} worker; only Ollama workers pull")
    for j, target in enumerate(model.pin):
        if target not in names:
            problems.append(f"{where}.pin[{j}]: no worker is named {target!r}")
    return problems


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str | int | float) -> float:
    """Ollama's keep_alive: a number of seconds or a Go duration ("5m", "1h30m", "-1"); <0 = forever."""
    if isinstance(text, (int, float)):
        return float(text)
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = re.fullmatch(r"(-?)((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)", value)
    if not parts:
        raise ValueError(f"not a duration: {text!r} (use seconds or e.g. \"30m\", \"1h30m\", \"-1\")")
    total = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", parts.group(2)))
    return -total if parts.group(1) else total
