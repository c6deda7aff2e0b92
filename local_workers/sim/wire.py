"""Wire details the simulated worker's handlers share: the app key, request-body parsing, Ollama's
error shape, its timestamps (RFC 3339 with offset) and its model listing entry.

Formatting only: no state changes here, and nothing from gateway/.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
from aiohttp import web

from local_workers.sim.engine import SimWorker
from local_workers.sim.models import SimModel

SIM_WORKER = web.AppKey("sim_worker", SimWorker)
NDJSON = "application/x-ndjson"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)  # Go's time.Duration(math.MaxInt64)


class SimError(Exception):
    """An error answer; the app's middleware renders it as Ollama (or, under /v1, OpenAI) does."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error(status: int, message: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def openai_error(status: int, message: str) -> web.Response:
    kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or SimError 400 with Go-like wording."""
    body = await request.read()
    if not body.strip():
        raise SimError(400, "missing request body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SimError(400, f"invalid character in request body: {exc}") from None
    if not isinstance(data, dict):
        raise SimError(400, f"json: cannot unmarshal {type(data).__name__} into Go value of type api.Request")
    return data


def model_field(data: dict) -> str:
    """The model a request names: `model`, or `name` as older clients send it."""
    name = data.get("model") or data.get("name") or ""
    if not isinstance(name, str):
        raise SimError(400, "json: cannot unmarshal model name: not a string")
    return name


def want_stream(data: dict) -> bool:
    return data.get("stream", True) is not False


def now_iso() -> str:
    """created_at as Ollama writes it: UTC, RFC 3339, fractional seconds, `Z`."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def local_iso(wall: float) -> str:
    """A wall-clock time in local time with its offset, as Go marshals time.Time."""
    return datetime.fromtimestamp(wall).astimezone().isoformat()


def expires_iso(deadline: float) -> str:
    """A monotonic deadline as RFC 3339; "forever" is Go's now + MaxInt64 ns (year 2318 or so)."""
    if deadline == float("inf"):
        return (datetime.now().astimezone() + _FOREVER).isoformat()
    return local_iso(time.time() + max(0.0, deadline - time.monotonic()))


def details(model: SimModel) -> dict:
    return {"parent_model": "", "format": "gguf", "family": model.family, "families": [model.family],
            "parameter_size": model.parameter_size, "quantization_level": model.quantization_level}


def entry(worker: SimWorker, model: SimModel) -> dict:
    """One /api/tags (and, with more fields, /api/ps) entry. Ollama lists the bare hex digest."""
    return {"name": model.name, "model": model.name, "modified_at": local_iso(worker.modified.get(model.name, 0.0)),
            "size": model.size_bytes, "digest": model.digest.removeprefix("sha256:"), "details": details(model)}
