"""outcome_of: the one place a request's outcome is decided, from what the front read, what the
proxy tried and what the relay returned (or the error the gateway answered with)."""

import asyncio

from aiohttp import web

from backends.usage import Usage
from gateway.errors import BadRequest, ModelNotFound, NoCapacity, UpstreamFailed, UpstreamTimeout
from gateway.outcome import Asked, Ended, Kind, Relayed, Trail, outcome_of, timer


def asked(**fields) -> Asked:
    return Asked("rid", "chat", "chat", "llama3.2:1b", timer(), **fields)


def test_an_answer_that_went_out_is_what_the_relay_says_with_the_workers_usage():
    trail = Trail("gpu0", "resident", ["gpu1: answered 500"])
    relayed = Relayed(web.StreamResponse(), 200, 0.25, Ended.OK, Usage(tokens=12, eval_s=0.5))
    outcome = outcome_of(asked(client="team-a"), trail, relayed, None)
    assert (outcome.kind, outcome.status, outcome.worker, outcome.reason) == (Kind.OK, 200, "gpu0", "resident")
    assert (outcome.ttfb_s, outcome.tokens, outcome.attempts, outcome.client) == (0.25, 12, ("gpu1: answered 500",),
                                                                                  "team-a")
    assert outcome.duration_s >= 0


def test_every_way_a_relayed_answer_ends_is_its_own_outcome():
    for ended in Ended:
        outcome = outcome_of(asked(), Trail("gpu0"), Relayed(web.StreamResponse(), 200, 0.1, ended), None)
        assert outcome.kind.value == ended.value


def test_the_gateways_own_errors_are_named_by_their_status():
    cases = [(BadRequest("x"), Kind.BAD_REQUEST, 400), (ModelNotFound("m"), Kind.NOT_FOUND, 404),
             (NoCapacity("busy", 2), Kind.NO_CAPACITY, 503), (UpstreamTimeout("slow"), Kind.TIMEOUT, 504),
             (UpstreamFailed("broken"), Kind.UPSTREAM_ERROR, 502)]
    for error, kind, status in cases:
        outcome = outcome_of(asked(), Trail(), None, error)
        assert (outcome.kind, outcome.status, outcome.tokens, outcome.ttfb_s) == (kind, status, None, None)


def test_a_client_that_hung_up_before_any_answer_is_client_gone_and_a_crash_is_an_error():
    assert outcome_of(asked(), Trail(), None, asyncio.CancelledError()).kind is Kind.CLIENT_GONE
    crashed = outcome_of(asked(), Trail(), None, KeyError("bug"))
    assert (crashed.kind, crashed.status) == (Kind.ERROR, 500)
