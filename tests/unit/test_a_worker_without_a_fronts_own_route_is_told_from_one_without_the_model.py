"""backends.fronts.route_missing: a worker sent a front's own route (/v1/messages, /v1/responses)
that answers it has no such route is asked again translated; a 404 about the model is the client's."""

from backends.base import UpstreamCall
from backends.fronts import route_missing

MESSAGES = UpstreamCall("POST", "/v1/messages", b"{}", front="anthropic")
RESPONSES = UpstreamCall("POST", "/v1/responses", b"{}", front="responses")


def test_the_404s_of_llama_servers_router_and_of_ollamas_gin_are_missing_routes():
    llama = b'{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}'
    assert route_missing(MESSAGES, 404, llama) and route_missing(RESPONSES, 404, llama)
    assert route_missing(RESPONSES, 404, b"404 page not found") and route_missing(MESSAGES, 404, b"404 page not found\n")


def test_a_model_not_found_another_status_or_a_translated_call_is_not():
    model = b'{"type":"error","error":{"type":"not_found_error","message":"model \'x\' not found"}}'
    assert not route_missing(MESSAGES, 404, model)
    assert not route_missing(MESSAGES, 400, b"404 page not found")
    chat = UpstreamCall("POST", "/v1/chat/completions", b"{}", front="anthropic")
    assert not route_missing(chat, 404, b"404 page not found")
    ollama = UpstreamCall("POST", "/api/chat", b"{}")
    assert not route_missing(ollama, 404, b"404 page not found")
