"""One gateway process of `serve --processes N`, and what it does with its siblings.

Each process learns its index, the count and the run folder from BEACON_PROCESS_* (set by the
supervisor, gateway/processes.py). Besides the shared port (SO_REUSEPORT: a connection lands
on any one process) it listens on a private unix socket in that folder (0700, so only the
gateway's own user reaches it) that answers for this process alone: GET /metrics, POST
/admin/reload, GET /health/live. On the shared port, /metrics merges every process's metrics
(each series labelled process="<index>") and /admin/reload reloads every process, through those
sockets; a sibling that does not answer in time is left out and said so.

A process stops by itself when its supervisor is gone (the kernel's parent-death signal, and a
poll of getppid() behind it), and then removes what the supervisor would have. Routes nothing and
shares no routing state: that goes through Redis (gateway/cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.context import GATEWAY, Gateway
from gateway.errors import error_middleware
from gateway.reload import Reloader

log = structlog.get_logger("gateway.siblings")

ENV_INDEX, ENV_COUNT = "BEACON_PROCESS_INDEX", "BEACON_PROCESS_COUNT"
ENV_FOLDER, ENV_PARENT = "BEACON_PROCESS_DIR", "BEACON_PROCESS_PARENT"
METRICS_TIMEOUT_S = 1.0  # a scrape waits this long for a sibling, then leaves it out
RELOAD_TIMEOUT_S = 30.0  # a reload probes and warms added workers before it answers
MAX_SIBLING_BYTES = 64 * 1024**2  # a sibling's metrics (a 1,000-worker fleet is a few MiB)
PARENT_POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class Role:
    """Which of the supervisor's processes this is, and where the run folder is."""

    index: int
    count: int
    folder: Path
    parent: int  # the supervisor's pid: another parent means it is gone

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Role | None:
        """The role the supervisor gave this process; None for a gateway started on its own.
        ValueError names what is wrong when the variables are there but not usable."""
        if ENV_INDEX not in env:
            return None
        try:
            role = cls(int(env[ENV_INDEX]), int(env[ENV_COUNT]), Path(env[ENV_FOLDER]), int(env[ENV_PARENT]))
        except (KeyError, ValueError):
            raise ValueError(f"{ENV_INDEX}, {ENV_COUNT}, {ENV_FOLDER} and {ENV_PARENT} are set by "
                             "`serve --processes N` for its processes; unset them to run one gateway") from None
        if not 0 <= role.index < role.count or not role.folder.is_dir():
            raise ValueError(f"{ENV_INDEX} must be below {ENV_COUNT}, and {ENV_FOLDER} must be a folder")
        return role

    def env(self) -> dict[str, str]:
        return {ENV_INDEX: str(self.index), ENV_COUNT: str(self.count), ENV_FOLDER: str(self.folder),
                ENV_PARENT: str(self.parent)}

    def socket(self, index: int) -> Path:
        return self.folder / f"{index}.sock"

    @property
    def redis_socket(self) -> Path:
        """Where the supervisor's private redis-server listens, when it started one."""
        return self.folder / "redis.sock"

    @property
    def orphaned(self) -> bool:
        return os.getppid() != self.parent


class Siblings:
    """This process's view of the others, for the handlers of the shared port (under SIBLINGS)."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.others = tuple(i for i in range(role.count) if i != role.index)
        self._unanswered: Counter | None = None  # beacon_process_metrics_unanswered_total, once the gateway is built

    def describe(self, gw: Gateway) -> dict:
        """/health's `process`: which process answered, and how it shares state with the others."""
        return {"index": self.role.index, "count": self.role.count, "pid": os.getpid(), "cluster": gw.cluster.mode}

    def bind(self, gw: Gateway) -> None:
        self._unanswered = gw.metrics.watch_siblings(self.others)

    async def merged_metrics(self, gw: Gateway) -> bytes:
        """Every process's metrics as one exposition, each series labelled with its process."""
        answers = await asyncio.gather(*(self._ask(i, "GET", "/metrics", METRICS_TIMEOUT_S) for i in self.others))
        texts = {}
        for index, answer in zip(self.others, answers, strict=True):
            if answer is None:
                if self._unanswered is not None:
                    self._unanswered.labels(sibling=str(index)).inc()
            else:
                texts[index] = answer
        texts[self.role.index] = generate_latest(gw.metrics.registry)  # after the count: this scrape shows it
        return await asyncio.to_thread(merge_expositions, texts)  # parsing N expositions: off the loop

    async def reload_all(self, reloader: Reloader, source: str) -> tuple[int, dict]:
        """Reload this process and every sibling at once; the status and a body naming each result."""
        own, others = await asyncio.gather(reloader.reload(source), asyncio.gather(*(
            self._ask(i, "POST", "/admin/reload", RELOAD_TIMEOUT_S) for i in self.others)))
        results = {self.role.index: own.as_dict()}
        for index, answer in zip(self.others, others, strict=True):
            found = _json_object(answer)
            results[index] = found if found is not None else {
                "result": "unanswered", "error": f"process {index} did not answer within {RELOAD_TIMEOUT_S:.0f} s"}
        return reload_report(self.role.index, results)

    async def _ask(self, index: int, method: str, path: str, timeout_s: float) -> bytes | None:
        """One call to a sibling's private socket: its 200 answer, or None (logged) when it has none."""
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.role.socket(index))),
                                             timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
                async with http.request(method, f"http://process-{index}{path}") as resp:
                    body = await resp.content.read(MAX_SIBLING_BYTES + 1)
                    if resp.status == 200 and len(body) <= MAX_SIBLING_BYTES:
                        return body
                    why = f"status {resp.status}" if resp.status != 200 else "answer too large"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("process.unanswered", sibling=index, path=path, reason=why)
        return None


SIBLINGS = web.AppKey("siblings", Siblings)


def reload_report(own: int, results: Mapping[int, dict]) -> tuple[int, dict]:
    """One answer for a reload of every process: this process's result at the top (what a lone
    gateway answers), each process's under `processes`; 422 when the config was refused, 503 when
    a process could not say (it still reloads from the file on its own poll, or on SIGHUP)."""
    body = {**results[own], "processes": [{"process": i, **results[i]} for i in sorted(results)]}
    failed = sorted(i for i, r in results.items() if r.get("result") == "failed")
    unanswered = sorted(i for i, r in results.items() if r.get("result") not in ("ok", "unchanged", "failed"))
    if failed:
        errors = results[failed[0]].get("errors") or []
        body.update(result="failed", errors=errors, error=f"config not reloaded by process {_listed(failed)} "
                    f"({len(errors)} errors); still running {results[failed[0]].get('version')}")
        return 422, body
    if unanswered:
        body.update(result="failed", error=f"process {_listed(unanswered)} did not confirm the reload; "
                    "it reloads from the file on its own poll, or on SIGHUP to the supervisor")
        return 503, body
    return 200, body


def _listed(indexes: list[int]) -> str:
    return ", ".join(str(i) for i in indexes)


def _json_object(answer: bytes | None) -> dict | None:
    try:
        found = orjson.loads(answer) if answer else None
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def merge_expositions(texts: Mapping[int, bytes]) -> bytes:
    """Prometheus text expositions of several processes as one: a family's series from every
    process together under one HELP and TYPE, each with a `process` label. Parsed and rendered by
    prometheus_client itself, so what it exports round-trips unchanged but for the label."""
    families: dict[str, Metric] = {}
    for index in sorted(texts):
        for family in text_string_to_metric_families(texts[index].decode()):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            process = {"process": str(index)}
            merged.samples.extend(Sample(s.name, {**process, **s.labels}, s.value, s.timestamp, s.exemplar)
                                  for s in family.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


# -- the private socket --------------------------------------------------------------------------
def _private_app(gw: Gateway) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[GATEWAY] = gw

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(gw.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def reload(request: web.Request) -> web.Response:
        result = await gw.reloader.reload("admin API, through a sibling process")
        return web.json_response(result.as_dict())  # refused or not: the asking process reports it

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/reload", reload)
    app.router.add_get("/health/live", live)
    return app


@contextlib.asynccontextmanager
async def attached(app: web.Application, role: Role) -> AsyncIterator[None]:
    """While the gateway serves: its private socket (the supervisor's sign that it is up) and the
    watch on its parent. On the way out: the socket file, and the run folder when orphaned."""
    gw = app[GATEWAY]
    app[SIBLINGS].bind(gw)
    private = web.AppRunner(_private_app(gw), access_log=None, shutdown_timeout=1)
    watch = None
    try:
        await private.setup()
        await web.UnixSite(private, str(role.socket(role.index))).start()
        watch = asyncio.ensure_future(watch_parent(role))
        yield
    finally:
        if watch is not None:
            watch.cancel()
        await private.cleanup()
        leave_folder(role)


async def watch_parent(role: Role, every_s: float = PARENT_POLL_S) -> None:
    """Stop this process (as SIGTERM would) once the supervisor is gone: nobody would stop it."""
    while not role.orphaned:
        await asyncio.sleep(every_s)
    log.warning("process.orphaned", reason="the supervisor is gone: stopping", supervisor=role.parent)
    os.kill(os.getpid(), signal.SIGTERM)


def leave_folder(role: Role) -> None:
    """Remove this process's socket; when the supervisor is gone (kill -9), also its private
    Redis's socket and the folder itself: the last process out finds it empty and removes it."""
    role.socket(role.index).unlink(missing_ok=True)
    if not role.orphaned:
        return  # the supervisor removes the folder when it stops
    role.redis_socket.unlink(missing_ok=True)  # that redis-server died with the supervisor
    with contextlib.suppress(OSError):  # not empty: a sibling still leaving removes it
        role.folder.rmdir()
