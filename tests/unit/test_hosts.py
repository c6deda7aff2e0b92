"""The Host check's pure parts: which listen addresses are loopback, how a Host header is read."""

from __future__ import annotations

import pytest

from gateway.hosts import allowed_host, hostname, listens_on_loopback
from gateway.settings import Settings


@pytest.mark.parametrize(("listen", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("api.localhost", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.2", False),
])
def test_which_listen_addresses_are_loopback(listen, loopback):
    assert listens_on_loopback(listen) is loopback


@pytest.mark.parametrize(("header", "name"), [
    ("localhost:11434", "localhost"), ("[::1]:11434", "::1"), ("[::1]", "::1"), ("::1", "::1"),
    ("fe80::1", "fe80::1"), ("example.com", "example.com"), ("", ""), ("[broken", "[broken"),
])
def test_a_host_header_without_its_port(header, name):
    assert hostname(header) == name


def test_ipv4_mapped_addresses_count_as_what_they_map():
    assert allowed_host("[::ffff:127.0.0.1]:80", "box")
    assert not allowed_host("[::ffff:8.8.8.8]:80", "box")
    assert allowed_host("BOX:80", "box"), "the machine's own name, in any case"


def test_allowed_hosts_setting_is_a_comma_list():
    assert Settings(allowed_hosts=" A.example., *.corp.example ,,").extra_hosts == ("a.example", "*.corp.example")
