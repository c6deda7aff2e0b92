"""The gateway's HTTP routes as data: method, path, the handler by name, and for a route that reads a
request body, the `[server] body_mib` key its limit is set under.

One table: app.py registers exactly these routes, config validation takes the body_mib keys from
it and the body reader finds a request's key here, so no second list can drift from the routes.
Pure data and lookups: imports nothing of the gateway (config.py reads it at import time, and the
handlers it names import config.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # GET also answers HEAD, as Ollama does
    path: str  # aiohttp's pattern
    handler: str  # "module.function" of a module in gateway/handlers
    body: str | None = None  # the [server] body_mib key of a route that reads a body

    @property
    def guarded(self) -> bool:
        """Every /admin/ route needs the admin token: by its path, so none can be added unguarded."""
        return self.path.startswith("/admin/")


def _admin(path: str, handler: str) -> Route:
    return Route("POST", f"/admin/{path}", f"admin.{handler}", "admin")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "ollama.root"),
    Route("GET", "/api/version", "ollama.version"),
    Route("GET", "/api/tags", "ollama.tags"),
    Route("GET", "/api/ps", "ollama.ps"),
    *(Route("POST", f"/api/{name}", "ollama.infer", name) for name in ("show", "chat", "generate", "embed",
                                                                        "embeddings")),
    *(Route("POST", f"/api/{name}", f"manage.{name}", name) for name in ("pull", "push", "create", "copy")),
    Route("DELETE", "/api/delete", "manage.delete", "delete"),
    Route("HEAD", "/api/blobs/{digest}", "manage.blob_head"),
    Route("POST", "/api/blobs/{digest}", "manage.blob_upload", "blobs"),
    Route("GET", "/health", "ops.health"),
    Route("GET", "/health/live", "ops.live"),
    Route("GET", "/metrics", "ops.metrics"),
    *(_admin(f"workers/{{name}}/{action}", action) for action in ("drain", "undrain", "warm", "unload")),
    _admin("reload", "reload"),
    _admin("explain", "explain"),
    Route("GET", "/status", "status_page.status_page"),
    Route("GET", "/status/cards", "status_page.status_cards"),
    Route("POST", "/v1/chat/completions", "openai.chat_completions", "chat/completions"),
    Route("POST", "/v1/completions", "openai.completions", "completions"),
    Route("POST", "/v1/embeddings", "openai.embeddings", "v1/embeddings"),
    Route("POST", "/v1/responses", "responses.create", "responses"),
    Route("GET", "/v1/models", "openai.list_models"),
    Route("GET", "/v1/models/{model:.+}", "openai.one_model"),  # ids may hold slashes (hf.co/org/model)
    Route("POST", "/v1/messages", "anthropic.messages", "messages"),
    Route("POST", "/v1/messages/count_tokens", "anthropic.count_tokens", "messages"),
)

BODY_ENDPOINTS: tuple[str, ...] = tuple(dict.fromkeys(r.body for r in ROUTES if r.body))

_EXACT = {r.path: r.body for r in ROUTES if r.body and "{" not in r.path}
_PREFIXES = tuple((r.path.partition("{")[0], r.body) for r in ROUTES if r.body and "{" in r.path)


def body_endpoint(path: str) -> str | None:
    """The `[server] body_mib` key a request path falls under ("chat", "blobs", "admin"), or None."""
    body = _EXACT.get(path)
    if body is None:
        body = next((key for prefix, key in _PREFIXES if path.startswith(prefix)), None)
    return body
