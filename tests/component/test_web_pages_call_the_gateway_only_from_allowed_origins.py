"""CORS as Ollama answers it. A web page on any site may POST text/plain to a gateway on the visitor's
machine without a preflight, so a request from a foreign Origin gets 403 in its front API's shape and
reaches no worker; a preflight from an allowed origin (Ollama's defaults, BEACON_ORIGINS, OLLAMA_ORIGINS)
gets 204 with the headers the SDKs send, and every answer to it, streams and errors included, carries
Access-Control-Allow-Origin. Clients that send no Origin see no change; /admin/* answers no page."""

from __future__ import annotations

from aiohttp import web

from gateway.access import hash_key
from tests.component.fake_workers import MODEL, FakeWorker
from tests.conftest import WorkerSpec

PAGE, FOREIGN = "http://localhost:3000", "https://attacker.example"
KEY = "page-key-0123456789abcdef"
CLIENTS = f'[[clients]]\nname = "page"\nkey_sha256 = "{hash_key(KEY)}"\nmanage = true\n'
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}}
SDK_HEADERS = "authorization,content-type,x-stainless-os,x-stainless-retry-count,anthropic-version,x-api-key"


def preflight(fleet, path: str, origin: str, method: str = "POST"):
    return fleet.http.options(fleet.url + path, headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": SDK_HEADERS})


async def test_a_preflight_from_an_allowed_origin_gets_204_with_ollamas_headers_and_needs_no_key(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS)
    probed = dict(fleet.workers["gpu0"].stats.requests)
    for path in ("/api/chat", "/api/tags", "/api/delete", "/v1/chat/completions", "/v1/messages", "/v1/models"):
        async with preflight(fleet, path, PAGE) as resp:
            assert resp.status == 204, path
            assert resp.headers["Access-Control-Allow-Origin"] == PAGE
            assert set(resp.headers["Access-Control-Allow-Methods"].split(",")) >= {"GET", "POST", "DELETE", "HEAD"}
            allowed = resp.headers["Access-Control-Allow-Headers"].lower().split(",")
            assert set(SDK_HEADERS.split(",")) <= set(allowed)
            assert resp.headers["Access-Control-Max-Age"] == "43200"
            assert resp.headers.getall("Vary") == ["Origin", "Access-Control-Request-Method",
                                                   "Access-Control-Request-Headers"]
            assert "Access-Control-Allow-Credentials" not in resp.headers, "Ollama allows no credentials"
            assert await resp.read() == b""
    assert fleet.workers["gpu0"].stats.requests == probed, "a preflight reaches no worker"
    async with fleet.http.options(fleet.url + "/api/chat", headers={"Authorization": f"Bearer {KEY}"}) as resp:
        # OPTIONS without Origin is no preflight: 405, as Ollama answers it
        assert resp.status == 405 and "error" in await resp.json()


async def test_a_page_on_a_foreign_origin_gets_403_in_each_fronts_shape_and_reaches_no_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models="llama3.2:1b=1.3GiB,qwen:0.5b=0.4GiB"))
    worker = fleet.workers["gpu0"]
    probed = dict(worker.stats.requests)
    simple = {"Origin": FOREIGN, "Content-Type": "text/plain"}  # what a page may send with no preflight
    attacks = [("POST", "/api/generate", b'{"model": "llama3.2:1b", "prompt": "x", "stream": false}'),
               ("POST", "/api/pull", b'{"model": "evil/model"}'),
               ("POST", "/api/copy", b'{"source": "qwen:0.5b", "destination": "llama3.2:1b"}'),
               ("DELETE", "/api/delete", b'{"model": "qwen:0.5b"}'),
               ("POST", "/api/create", b'{"model": "x", "from": "qwen:0.5b"}'),
               ("POST", "/api/chat", b"{}"), ("GET", "/api/tags", b""), ("GET", "/", b"")]
    messages = set()
    for method, path, body in attacks:
        async with fleet.http.request(method, fleet.url + path, data=body, headers=simple) as resp:
            assert resp.status == 403, path
            assert "Access-Control-Allow-Origin" not in resp.headers
            messages.add((await resp.json())["error"])
    assert len(messages) == 1 and "BEACON_ORIGINS" in messages.pop() and FOREIGN not in str(messages)
    async with fleet.http.post(fleet.url + "/v1/chat/completions", data=b"{}", headers=simple) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["type"] == "permission_error"
    async with fleet.http.post(fleet.url + "/v1/messages", data=b"{}", headers=simple) as resp:
        body = await resp.json()
        assert resp.status == 403 and body["type"] == "error" and body["error"]["type"] == "permission_error"
    async with preflight(fleet, "/api/chat", FOREIGN) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    assert worker.stats.requests == probed, "a refused request reaches no worker"
    assert worker.stats.loads == [], "nothing ran"
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200, "clients that send no Origin are served as before"


async def test_answers_to_an_allowed_origin_carry_allow_origin_whole_streamed_and_errors(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS)
    page = {"Origin": PAGE, "Authorization": f"Bearer {KEY}"}

    def assert_cors(resp, what: str) -> None:
        assert resp.headers.get("Access-Control-Allow-Origin") == PAGE, what
        assert "Origin" in resp.headers.getall("Vary", []), what
        assert set(resp.headers["Access-Control-Expose-Headers"].split(",")) == {"Retry-After", "X-Request-Id"}

    async with fleet.post("/api/chat", CHAT | {"stream": True}, headers=page) as resp:
        lines = [line async for line in resp.content]
        assert resp.status == 200 and len(lines) == 4 and b'"done":true' in lines[-1]
        assert_cors(resp, "an Ollama stream")
    async with fleet.post("/api/chat", CHAT | {"stream": False}, headers=page) as resp:
        assert resp.status == 200 and (await resp.json())["done"]
        assert_cors(resp, "a whole answer")
    async with fleet.post("/v1/chat/completions", CHAT | {"stream": True}, headers=page) as resp:
        assert resp.status == 200 and (await resp.read()).rstrip().endswith(b"data: [DONE]")
        assert_cors(resp, "an SSE stream")
    async with fleet.get("/api/tags", headers=page) as resp:
        assert resp.status == 200
        assert_cors(resp, "a listing")
    async with fleet.post("/api/chat", CHAT | {"model": "nope:1b"}, headers=page) as resp:
        assert resp.status == 404 and "not found" in (await resp.json())["error"]
        assert_cors(resp, "an unknown model")
    async with fleet.post("/api/chat", CHAT, headers={"Origin": PAGE}) as resp:
        assert resp.status == 401
        assert_cors(resp, "a missing key: the page can read why")
    async with fleet.http.post(fleet.url + "/api/chat", data=b"{not json", headers=page) as resp:
        assert resp.status == 400
        assert_cors(resp, "bad JSON")


async def test_clients_without_origin_and_the_gateways_own_pages_see_no_cors_at_all(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"listen": "0.0.0.0:11434"})
    async with fleet.post("/api/chat", CHAT | {"stream": False}) as resp:
        assert resp.status == 200
        assert not [name for name in resp.headers if name.lower().startswith("access-control-")]
    # Same origin (a page the gateway served, under whatever name it was reached by): not a CORS request.
    own = {"Host": "gateway.example:11434", "Origin": "http://gateway.example:11434"}
    async with fleet.post("/api/chat", CHAT | {"stream": False}, headers=own) as resp:
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    async with fleet.get("/health", headers=own) as resp:
        assert resp.status == 200


async def test_the_admin_api_answers_no_cross_origin_request_even_from_an_allowed_origin(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), admin_token="admin-secret", settings={"origins": "*"})
    admin = {"Authorization": "Bearer admin-secret"}
    for origin in (PAGE, "file://", FOREIGN):
        async with fleet.post("/admin/workers/gpu0/drain", headers=admin | {"Origin": origin}) as resp:
            assert resp.status == 403 and "admin API" in (await resp.json())["error"], origin
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with preflight(fleet, "/admin/workers/gpu0/drain", origin) as resp:
            assert resp.status == 403, origin
    assert not fleet.gateway.holder.current.workers["gpu0"].drained, "nothing was drained"
    async with fleet.post("/admin/workers/gpu0/drain", headers=admin) as resp:
        assert resp.status == 200, "the CLI (no Origin) still operates the fleet"


async def test_ops_endpoints_follow_the_same_rule(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    for path in ("/health", "/health/live", "/metrics", "/status"):
        async with fleet.get(path, headers={"Origin": FOREIGN}) as resp:
            assert resp.status == 403, path
        async with fleet.get(path, headers={"Origin": PAGE}) as resp:
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == PAGE, path


async def test_beacon_origins_and_ollama_origins_add_origins_and_a_star_allows_every_page(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"origins": "https://*.corp.example, https://ui.example"})
    for origin, status in (("https://ui.example", 200), ("https://chat.corp.example", 200), (PAGE, 200),
                           (FOREIGN, 403), ("https://ui.example.attacker.example", 403)):
        async with fleet.get("/api/tags", headers={"Origin": origin}) as resp:
            assert resp.status == status, origin
            assert resp.headers.get("Access-Control-Allow-Origin") == (origin if status == 200 else None)
    fleet = await start_fleet(WorkerSpec("gpu1"), settings={"ollama_origins": "https://ui.example"})
    async with fleet.get("/api/tags", headers={"Origin": "https://ui.example"}) as resp:
        assert resp.status == 200, "OLLAMA_ORIGINS counts while BEACON_ORIGINS is unset"
    fleet = await start_fleet(WorkerSpec("gpu2"), settings={"ollama_origins": "https://ui.example", "origins": ""})
    async with fleet.get("/api/tags", headers={"Origin": "https://ui.example"}) as resp:
        assert resp.status == 403, "BEACON_ORIGINS, set even empty, replaces OLLAMA_ORIGINS"
    fleet = await start_fleet(WorkerSpec("gpu3"), settings={"origins": "*"})
    async with fleet.get("/api/tags", headers={"Origin": FOREIGN}) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in resp.headers, "a star answers every origin alike, as gin-contrib/cors does"
    async with preflight(fleet, "/api/chat", FOREIGN) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_workers_own_cors_headers_never_reach_the_page_and_no_origin_reaches_a_worker(start_fleet,
                                                                                          aiohttp_server):
    # llama-server answers every Origin with itself and Ollama refuses origins it does not know: the
    # gateway alone decides, so it sends workers no Origin and relays none of their Access-Control-*.
    seen: list[str | None] = []

    async def permissive_chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Origin"))
        answer = {"model": MODEL, "message": {"role": "assistant", "content": "hi"}, "done": True,
                  "done_reason": "stop", "eval_count": 1}
        return web.json_response(answer, headers={"Access-Control-Allow-Origin": "*", "Vary": "Accept",
                                                  "Access-Control-Allow-Credentials": "true"})

    fake = FakeWorker("ollama")
    fake.routes["/api/chat"] = permissive_chat
    url = str((await aiohttp_server(fake.app())).make_url("")).rstrip("/")
    fleet = await start_fleet(WorkerSpec("gpu0", url=url))
    body = CHAT | {"model": MODEL, "stream": False}
    async with fleet.post("/api/chat", body) as resp:
        assert resp.status == 200, await resp.text()
        assert not [name for name in resp.headers if name.lower().startswith("access-control-")]
    async with fleet.post("/api/chat", body, headers={"Origin": PAGE}) as resp:
        assert resp.status == 200 and resp.headers.getall("Access-Control-Allow-Origin") == [PAGE]
        assert "Access-Control-Allow-Credentials" not in resp.headers
    assert seen == [None, None], "no Origin is forwarded to a worker"
