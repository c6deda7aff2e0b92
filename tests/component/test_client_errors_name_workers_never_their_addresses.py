"""What a client reads when workers fail names the workers, never where they live: no host, no
port, no URL in 502/503 bodies of either front API, nor in fan-out or admin failures (aiohttp's
own error texts carry the address; the gateway describes the failure without them)."""

from urllib.parse import urlsplit

from tests.conftest import WorkerSpec

CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
TOKEN = "address-test-token"


def assert_names_only(text: str, name: str, url: str) -> None:
    parts = urlsplit(url)
    assert name in text, text
    for address in (url, parts.netloc, f"'{parts.hostname}', {parts.port}", str(parts.port)):
        assert address not in text, f"{address!r} leaked into: {text}"


async def test_a_killed_worker_is_named_by_its_name_in_503s_of_both_fronts(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[health]\nunhealthy_threshold = 5\n")
    url = fleet.worker_urls["gpu0"]
    await fleet.stop_worker("gpu0")  # still up in the snapshot: the request itself finds the refused connection
    async with fleet.post("/api/chat", CHAT) as resp:
        assert resp.status == 503
        message = (await resp.json())["error"]
    assert_names_only(message, "gpu0", url)
    assert "cannot connect" in message and "refused" in message.lower()
    async with fleet.post("/v1/chat/completions", {"model": "llama3.2:1b", "messages": CHAT["messages"]}) as resp:
        assert resp.status == 503
        assert_names_only((await resp.json())["error"]["message"], "llama3.2:1b", url)


async def test_fan_out_and_admin_failures_name_the_worker_and_not_its_address(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[health]\nunhealthy_threshold = 5\n",
                              admin_token=TOKEN)
    url = fleet.worker_urls["gpu0"]
    await fleet.stop_worker("gpu0")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for method, path, body, status in [("DELETE", "/api/delete", {"model": "llama3.2:1b"}, 502),
                                       ("POST", "/api/pull", {"model": "llama3.2:1b", "stream": False}, 500),
                                       ("POST", "/admin/workers/gpu0/warm", {"model": "llama3.2:1b"}, 502)]:
        await fleet.probe()  # probes failing below the threshold keep gpu0 up: the call itself fails
        async with fleet.http.request(method, fleet.url + path, json=body, headers=auth) as resp:
            assert resp.status == status, (path, await resp.text())
            assert_names_only((await resp.json())["error"], "gpu0", url)
    error = fleet.gateway.holder.current.worker("gpu0").last_error
    assert "cannot connect" in error and str(urlsplit(url).port) not in error  # /health shows this one
