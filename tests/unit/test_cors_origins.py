"""Which Origin values may call the gateway from a browser: Ollama's defaults, its wildcard rules
(one "*", a prefix and a suffix), the extra origins of BEACON_ORIGINS or OLLAMA_ORIGINS, and the
entries Ollama itself refuses to start with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cors import ALLOW_HEADERS, DEFAULT_ORIGINS, Origins, parse_origins
from gateway.settings import Settings

ALLOWED_BY_DEFAULT = [
    "http://localhost", "https://localhost", "http://localhost:3000", "https://localhost:8443",
    "http://127.0.0.1", "http://127.0.0.1:5173", "https://127.0.0.1:1", "http://0.0.0.0:8080",
    "app://obsidian.md", "file://", "tauri://localhost", "vscode-webview://abc123", "vscode-file://vscode-app",
]
REFUSED_BY_DEFAULT = [
    "http://evil.example", "https://attacker.example:11434", "http://localhost.evil.example",
    "http://127.0.0.1.nip.io", "http://evil.localhost:3000", "http://[::1]:3000", "http://192.168.1.5",
    "null", "", "chrome-extension://abcdefghijklmnop", "moz-extension://1234", "http://LOCALHOST:3000",
    "ftp://localhost", "http://localhost3000", "x" * 5000,
]


def test_the_defaults_are_ollamas_in_its_order():
    assert DEFAULT_ORIGINS[:4] == ("http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*")
    assert len(DEFAULT_ORIGINS) == 17 and DEFAULT_ORIGINS[-5:] == (
        "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")


@pytest.mark.parametrize("origin", ALLOWED_BY_DEFAULT)
def test_local_pages_and_desktop_apps_are_allowed_by_default(origin):
    assert Origins().allows(origin)


@pytest.mark.parametrize("origin", REFUSED_BY_DEFAULT)
def test_other_origins_and_browser_extensions_are_refused_by_default(origin):
    # Browser extensions need an entry, as in Ollama: AllowBrowserExtensions only lets the list name them.
    assert not Origins().allows(origin)


def test_extra_origins_exact_and_with_one_wildcard():
    origins = Origins(parse_origins(" https://App.Example.com , https://*.corp.example,chrome-extension://*,"
                                    "http://ui.example:*, http://dash.example:3000/"))
    for origin in ("https://app.example.com", "https://a.corp.example", "https://b.a.corp.example",
                   "chrome-extension://abcdef", "http://ui.example:8080", "http://dash.example:3000"):
        assert origins.allows(origin), origin
    for origin in ("http://app.example.com", "https://app.example.com:443", "https://corp.example",
                   "https://corp.example.evil", "http://a.corp.example", "moz-extension://abcdef",
                   "http://ui.example", "http://dash.example:3001"):
        assert not origins.allows(origin), origin


def test_a_star_alone_allows_every_origin():
    assert Origins(parse_origins("*")).allow_all and Origins(parse_origins("*")).allows("http://anything.example")


def test_a_wildcard_needs_the_whole_prefix_and_suffix_not_an_overlap():
    assert not Origins(parse_origins("http://a*a")).allows("http://a")
    assert Origins(parse_origins("http://a*a")).allows("http://aba")


@pytest.mark.parametrize(("text", "words"), [
    ("example.com", "must contain '*'"),
    ("http://a.example, tauri://localhost", "'tauri://localhost' must contain '*'"),
    ("https://*.example.*", "more than one '*'"),
    ("y" * 500, "..."),  # the message shows a bounded part of the entry
])
def test_entries_that_ollama_refuses_to_start_with_are_refused(text, words):
    with pytest.raises(ValueError) as caught:
        parse_origins(text)
    assert words in str(caught.value) and len(str(caught.value)) < 300


def test_quotes_around_the_whole_value_and_empty_entries_are_dropped_as_ollama_does():
    assert parse_origins('"http://a.example,,https://b.example"') == ("http://a.example", "https://b.example")
    assert parse_origins("") == () and parse_origins(" , ") == ()


def test_beacon_origins_when_set_replaces_ollama_origins_and_unset_lets_it_count(monkeypatch):
    monkeypatch.delenv("BEACON_ORIGINS", raising=False)
    monkeypatch.setenv("OLLAMA_ORIGINS", "https://from-ollama.example")
    assert Settings().extra_origins == ("https://from-ollama.example",)
    monkeypatch.setenv("BEACON_ORIGINS", "https://from-beacon.example")
    assert Settings().extra_origins == ("https://from-beacon.example",)
    monkeypatch.setenv("BEACON_ORIGINS", "")  # set but empty: the defaults only, OLLAMA_ORIGINS ignored
    assert Settings().extra_origins == ()


def test_a_bad_origin_setting_stops_start_up_naming_the_variable(monkeypatch, capsys):
    from gateway.serve import load_settings

    monkeypatch.delenv("BEACON_ORIGINS", raising=False)
    monkeypatch.setenv("OLLAMA_ORIGINS", "example.com")
    assert load_settings() is None
    assert capsys.readouterr().err.startswith("bad settings: OLLAMA_ORIGINS: ")
    monkeypatch.delenv("OLLAMA_ORIGINS")
    monkeypatch.setenv("BEACON_ORIGINS", "http://*.a.*")
    assert load_settings() is None
    assert capsys.readouterr().err.startswith("bad settings: BEACON_ORIGINS: ")


def test_the_allowed_request_headers_cover_what_the_sdks_send():
    allowed = {name.lower() for name in ALLOW_HEADERS.split(",")}
    ollama_js = {"content-type", "accept", "user-agent"}
    openai_js = {"authorization", "openai-beta", "openai-organization", "openai-project", "x-stainless-arch",
                 "x-stainless-lang", "x-stainless-os", "x-stainless-package-version", "x-stainless-retry-count",
                 "x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-timeout",
                 "x-stainless-helper-method", "x-stainless-poll-helper", "x-stainless-custom-poll-interval"}
    anthropic_js = {"x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
                    "x-stainless-helper"}
    assert ollama_js | openai_js | anthropic_js <= allowed


def gin_allows(configured: list[str], origin: str) -> bool:
    """gin-contrib/cors v1.7.2's validateOrigin with Ollama's AllowWildcard, ported line for line."""
    if "*" in configured:
        return True
    if origin in [value.strip().lower() for value in configured]:
        return True
    for rule in configured:
        if "*" not in rule:
            continue
        i = rule.index("*")
        w = ("*", rule[1:]) if i == 0 else (rule[:i], "*") if i == len(rule) - 1 else (rule[:i], rule[i + 1:])
        if (w[0] == "*" and origin.endswith(w[1])) or (w[1] == "*" and origin.startswith(w[0])) \
                or (origin.startswith(w[0]) and origin.endswith(w[1])):
            return True
    return False


PART = st.sampled_from(["http://", "https://", "app://", "file://", "chrome-extension://", "localhost", "127.0.0.1",
                        "0.0.0.0", ":", "3000", ".example", "evil", "a", "", "/", "[::1]", "LOCALHOST"])
ORIGIN = st.lists(PART, max_size=5).map("".join)
EXTRA = st.lists(st.builds(lambda a, star, b: a + ("*" if star else "") + b, ORIGIN, st.booleans(), ORIGIN)
                 .filter(lambda entry: "*" in entry or entry.lower().startswith(("http://", "https://"))), max_size=3)


@settings(max_examples=400, deadline=None)
@given(extra=EXTRA, origin=ORIGIN)
def test_matching_is_gins_except_where_a_prefix_and_suffix_would_overlap(extra, origin):
    extra = [entry.lower() for entry in extra if "," not in entry and not entry.endswith("/")]
    ours, gins = Origins(parse_origins(",".join(extra))).allows(origin), gin_allows([*extra, *DEFAULT_ORIGINS], origin)
    if ours != gins:  # the one deliberate difference: "http://a*a" does not match "http://a"
        assert gins and not ours and any(
            "*" in entry and len(origin) < len(entry) - 1 for entry in (*extra, *DEFAULT_ORIGINS)), (extra, origin)
