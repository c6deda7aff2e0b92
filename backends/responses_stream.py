"""A chat-completion SSE stream as OpenAI Responses stream events, for workers that serve only chat.

Every event has its `event:` line, a `sequence_number` counting from 0, and the `output_index` (and on
text events the `content_index`) that the openai SDK's responses.stream() needs to accumulate; every
lifecycle event carries the same response id, every item added is also done, and the stream ends with
`response.completed` (whose usage is the worker's) or, when it fails, `error` + `response.failed`.

Stateful per answer only; no I/O. Chunks may split anywhere: the chat SSE is split on line ends.
"""

from __future__ import annotations

from typing import Any

import orjson

from backends.answers import loads_lenient
from backends.responses_shape import (
    STATUS,
    Shape,
    accounted,
    call_item,
    message_item,
    new_call_id,
    reasoning_item,
    reasoning_of,
    text_part,
    usage_object,
)
from backends.streams import NdjsonSplitter
from backends.usage import Usage
from backends.worker_said import as_openai_error


class ResponsesStream:
    """backends.base.AnswerTranslator for /v1/responses over /v1/chat/completions."""

    def __init__(self, model: str, request: dict[str, Any], max_line: int = 16 * 1024 * 1024) -> None:
        self.shape = Shape(model, request)
        self._lines = NdjsonSplitter(max_line=max_line)
        self._seq = 0
        self._items: list[dict[str, Any]] = []  # the output so far, by output_index
        self._texts: dict[int, str] = {}  # the text so far of each message or reasoning item
        self._text: int | None = None  # the output_index of the message item open now
        self._thinking: int | None = None  # ... of the reasoning item open now
        self._calls: dict[Any, int] = {}  # a chat tool call's index -> its item's output_index
        self._open: list[int] = []  # items added and not yet done, in order
        self._reason: str | None = None
        self._usage: Any = None
        self._timings: Any = None
        self._stats: Usage | None = None
        self.started = False
        self.finished = False  # a terminal event (completed or failed) has been sent

    # -- the AnswerTranslator protocol ---------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        started = self.started
        try:
            out = bytearray(self._start())
            for line in self._lines.feed(chunk):
                out += self._line(line)
        except BaseException:  # a malformed first chunk: nothing reached the client, so cut() starts afresh
            if not started:
                self.started, self._seq, self._items, self._open = False, 0, [], []
            raise
        return bytes(out)

    def end(self) -> bytes:
        """The last line, and `response.completed` when the worker finished its answer (a finish_reason)
        without sending [DONE]; a stream that stopped before that stays unfinished: a cut."""
        out = bytearray(self._start())
        for line in self._lines.flush():
            out += self._line(line)
        if not self.finished and self._reason is not None:
            out += self._complete()
        return bytes(out)

    def whole(self, body: bytes) -> bytes:
        answer, self._stats = self.shape.whole(body)
        return answer

    def usage(self) -> Usage | None:
        return self._stats

    def cut(self, message: str, code: str = "server_error") -> bytes:
        """What ends a stream that failed: an `error` event, then `response.failed` with the output so far."""
        if self.finished:
            return b""
        self.finished = True
        out = self._start() + self._event("error", code=code, message=message, param=None)
        failed = self.shape.response("failed", [self._so_far(i) for i in range(len(self._items))],
                                     usage_object(self._usage, self._timings), {"code": code, "message": message})
        return out + self._event("response.failed", response=failed)

    def error(self, body: bytes, status: int) -> bytes:
        return as_openai_error(body, status)

    # -- reading the chat stream -----------------------------------------------------------------
    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return (self._event("response.created", response=self.shape.response("in_progress", []))
                + self._event("response.in_progress", response=self.shape.response("in_progress", [])))

    def _line(self, line: bytes) -> bytes:
        line = line.rstrip(b"\r")
        if self.finished or not line.startswith(b"data:"):
            return b""  # comments, `event:` names, keep-alives
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return self._complete()
        event = loads_lenient(payload)
        if not isinstance(event, dict):
            return b""
        if event.get("error"):
            error = event["error"]
            return self.cut(str(error.get("message", error)) if isinstance(error, dict) else str(error))
        if isinstance(event.get("usage"), dict) or isinstance(event.get("timings"), dict):
            self._usage, self._timings = event.get("usage") or self._usage, event.get("timings") or self._timings
            self._stats = accounted(event) or self._stats
        choices = event.get("choices")
        choice = _object(choices[0] if isinstance(choices, list) and choices else None)
        delta = _object(choice.get("delta"))
        out = bytearray()
        if thinking := reasoning_of(delta):
            out += self._thought(thinking)
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._said(delta["content"])
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                out += self._called(position, call)
        if choice.get("finish_reason"):
            self._reason = choice["finish_reason"]
            out += self._close_all()  # usage and [DONE] may follow: response.completed waits for them
        return bytes(out)

    def _thought(self, text: str) -> bytes:
        out = self._close(self._text)
        if self._thinking is None:
            self._thinking = self._add(reasoning_item(self.shape.item_id("rs", len(self._items)), None))
            out += self._added(self._thinking)
            out += self._event("response.reasoning_summary_part.added", **self._at(self._thinking), summary_index=0,
                               part={"type": "summary_text", "text": ""})
        self._texts[self._thinking] += text
        return out + self._event("response.reasoning_summary_text.delta", **self._at(self._thinking), summary_index=0,
                                 delta=text)

    def _said(self, text: str) -> bytes:
        out = self._close(self._thinking)
        if self._text is None:
            self._text = self._add(message_item(self.shape.item_id("msg", len(self._items)), None, "in_progress"))
            out += self._added(self._text)
            out += self._event("response.content_part.added", **self._at(self._text), content_index=0,
                               part=text_part(""))
        self._texts[self._text] += text
        return out + self._event("response.output_text.delta", **self._at(self._text), content_index=0, delta=text,
                                 logprobs=[])

    def _called(self, position: int, call: dict[str, Any]) -> bytes:
        """One tool-call delta: its first opens a function_call item, the rest add to its arguments."""
        key = call["index"] if isinstance(call.get("index"), int) else call.get("id") or position
        function = _object(call.get("function"))
        name = function["name"] if isinstance(function.get("name"), str) else ""
        out = b""
        if key not in self._calls:
            out = self._close(self._thinking) + self._close(self._text)
            item = call_item(self.shape.item_id("fc", len(self._items)), call.get("id") or new_call_id(), name, "",
                             "in_progress")
            self._calls[key] = self._add(item)
            out += self._added(self._calls[key])
        elif name and name != self._items[self._calls[key]]["name"]:
            self._items[self._calls[key]]["name"] += name  # a name sent in pieces
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode() if arguments else ""
        if not arguments or self._calls[key] not in self._open:
            return out
        self._items[self._calls[key]]["arguments"] += arguments
        return out + self._event("response.function_call_arguments.delta", **self._at(self._calls[key]),
                                 delta=arguments)

    # -- items ----------------------------------------------------------------------------------
    def _add(self, item: dict[str, Any]) -> int:
        index = len(self._items)
        if item["type"] != "function_call":
            self._texts[index] = ""
        self._items.append(item)
        self._open.append(index)
        return index

    def _at(self, index: int) -> dict[str, Any]:
        return {"item_id": self._items[index]["id"], "output_index": index}

    def _added(self, index: int) -> bytes:
        return self._event("response.output_item.added", output_index=index, item=self._items[index])

    def _close(self, index: int | None) -> bytes:
        if index is None or index not in self._open:
            return b""
        self._open.remove(index)
        item = self._items[index]
        if item["type"] == "message":
            self._text, text = None, self._texts[index]
            item.update(message_item(item["id"], text))
            return (self._event("response.output_text.done", **self._at(index), content_index=0, text=text,
                                logprobs=[])
                    + self._event("response.content_part.done", **self._at(index), content_index=0,
                                  part=text_part(text))
                    + self._event("response.output_item.done", output_index=index, item=item))
        if item["type"] == "reasoning":
            self._thinking, text = None, self._texts[index]
            item.update(reasoning_item(item["id"], text))
            return (self._event("response.reasoning_summary_text.done", **self._at(index), summary_index=0, text=text)
                    + self._event("response.reasoning_summary_part.done", **self._at(index), summary_index=0,
                                  part=item["summary"][0])
                    + self._event("response.output_item.done", output_index=index, item=item))
        item.update(status="completed", arguments=item["arguments"] or "{}")
        return (self._event("response.function_call_arguments.done", **self._at(index), name=item["name"],
                            arguments=item["arguments"])
                + self._event("response.output_item.done", output_index=index, item=item))

    def _so_far(self, index: int) -> dict[str, Any]:
        """An item as it stands when the stream fails: one still open is incomplete, with what it had."""
        item = self._items[index]
        if index not in self._open:
            return item
        if item["type"] == "message":
            return message_item(item["id"], self._texts[index], "incomplete")
        if item["type"] == "reasoning":
            return reasoning_item(item["id"], self._texts[index])
        return {**item, "status": "incomplete"}

    def _close_all(self) -> bytes:
        return b"".join(self._close(index) for index in list(self._open))

    def _complete(self) -> bytes:
        if self.finished:
            return b""
        out = self._close_all()
        self.finished = True
        usage = usage_object(self._usage, self._timings)
        return out + self._event("response.completed", response=self.shape.response(STATUS, self._items, usage))

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
