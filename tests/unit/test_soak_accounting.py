"""The soak benchmark's bookkeeping: each finished request is classified as exactly one outcome, a
cut counts as such only while its worker was being killed, and the outcomes add up to what was sent."""

from __future__ import annotations

from tests.perf.soak_accounting import account, body_valid, classify, is_json_error, note_line

KILLS = [("gpu0", 10.0)]


def rec(kind: str = "chat_stream", **fields) -> dict:
    return {"i": 0, "kind": kind, "status": 200, "worker": "gpu0", "started": 9.0, "ended": 11.0,
            "first_byte": 9.5} | fields


def test_each_outcome_is_classified():
    assert classify(rec(done=True), KILLS)[0] == "completed"
    assert classify(rec("chat", valid=True), KILLS)[0] == "completed"
    assert classify(rec("unknown_model", status=404, json_error=True), KILLS)[0] == "refused"
    assert classify(rec("bad_json", status=400, json_error=True), KILLS)[0] == "refused"
    assert classify(rec("chat", status=503, json_error=True), KILLS)[0] == "refused"
    assert classify(rec(error_line=True), KILLS)[0] == "cut"
    assert classify(rec("disconnect", disconnected=True), KILLS)[0] == "disconnected"


def test_anything_else_is_lost():
    assert classify(rec("chat", status=500, json_error=True), KILLS)[0] == "lost"
    assert classify(rec("chat", status=502, json_error=True), KILLS)[0] == "lost"
    assert classify(rec("chat", status=503, json_error=False), KILLS)[0] == "lost"  # not a clear refusal
    assert classify(rec(exc="a client timeout (30 s)"), KILLS)[0] == "lost"
    assert classify(rec(exc="ClientConnectorError: refused", status=None), KILLS)[0] == "lost"
    assert classify(rec(), KILLS)[0] == "lost"  # a stream that ended without done and without an error
    assert classify(rec("chat", valid=False), KILLS)[0] == "lost"
    assert classify(rec("unknown_model", status=200, valid=False), KILLS)[0] == "lost"  # should be 404
    assert classify(rec("bad_json", status=404, json_error=True), KILLS)[0] == "lost"  # should be 400


def test_a_cut_needs_a_kill_of_its_own_worker_while_it_was_in_flight_after_its_first_byte():
    assert classify(rec(error_line=True, worker="gpu1"), KILLS)[0] == "lost"
    assert classify(rec(error_line=True, started=10.5, ended=11.0), KILLS)[0] == "lost"
    assert classify(rec(error_line=True, first_byte=None), KILLS)[0] == "lost"
    assert classify(rec(error_line=True), [])[0] == "lost"


def test_outcomes_add_up_to_sent_and_unrecorded_requests_are_lost():
    records = [rec(done=True), rec(error_line=True), rec("disconnect", disconnected=True),
               rec("tags", valid=True), rec("bad_json", status=400, json_error=True), rec("chat", status=500)]
    report = account(records, sent=6, kills=KILLS)
    outcomes = tuple(report[k] for k in ("completed", "refused", "cut", "disconnected", "lost"))
    assert outcomes == (2, 1, 1, 1, 1)
    assert report["balanced"] and report["lost_details"][0]["status"] == 500
    short = account(records[:5], sent=7, kills=KILLS)
    assert short["lost"] == 2 and short["balanced"]
    assert "never recorded" in short["lost_details"][-1]["why"]
    assert not account(records, sent=5, kills=KILLS)["balanced"]  # more records than requests sent


def test_stream_endings_and_bodies_are_read_as_the_fronts_write_them():
    ndjson, sse = {}, {}
    note_line(ndjson, b'{"message": {"content": "hi"}, "done": false}\n', sse=False)
    assert not ndjson.get("done")
    note_line(ndjson, b'{"done": true}\n', sse=False)
    note_line(sse, b'data: {"error": {"message": "cut", "type": "api_error", "code": 502}}\n', sse=True)
    assert ndjson["done"] and sse["error_line"] and not sse.get("done")
    note_line(sse, b"data: [DONE]\n", sse=True)
    assert sse["done"]
    assert body_valid("chat", b'{"done": true}') and not body_valid("chat", b'{"done": false}')
    assert body_valid("embed", b'{"embeddings": [[0.1]]}') and body_valid("tags", b'{"models": []}')
    assert not body_valid("openai", b"not json") and body_valid("openai", b'{"choices": [{}]}')
    assert is_json_error(b'{"error": "model not found"}') and not is_json_error(b"<html>")
