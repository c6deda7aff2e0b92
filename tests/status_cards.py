"""Reading the status page's cards as data, for tests: what a page or /status/cards holds.

Each card carries its worker, state, reason and models as data attributes
(gateway/handlers/status_page.py), so tests read those, never colours or wording. `elements`
lists every element inside a card as "tag.class", so a test can see that nothing a worker said
became markup; `shown_models` is the text of the model names a person sees.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"))


@dataclass
class Card:
    worker: str
    state: str
    reason: str
    models: list[str]
    text: str = ""
    shown_models: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)


class _Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: list[Card] = []
        self._depth = 0  # element depth inside the current card; 0 = outside any card
        self._model_at = 0  # the depth of the model name being read; 0 = none

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        cls = a.get("class", "")
        if self._depth:
            self.cards[-1].elements.append(f"{tag}.{cls}")
            if tag in _VOID:
                return
            self._depth += 1
            if cls == "model":
                self._model_at = self._depth
                self.cards[-1].shown_models.append("")
        elif "card" in cls.split():
            self.cards.append(Card(a["data-worker"], a["data-state"], a["data-reason"], json.loads(a["data-models"])))
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag not in _VOID:
            if self._depth == self._model_at:
                self._model_at = 0
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.cards[-1].text += data
            if self._model_at:
                self.cards[-1].shown_models[-1] += data


def parse_cards(page: str) -> list[Card]:
    parser = _Cards()
    parser.feed(page)
    parser.close()
    return parser.cards


def states(page: str) -> list[tuple[str, str]]:
    return [(c.worker, c.state) for c in parse_cards(page)]


def report_form(page: str) -> str:
    """"full" (workers shown) or "public" (the status only), as the cards element says."""
    found = re.search(r'<main id="cards"[^>]*\bdata-report="(\w+)"', page)
    assert found, "no cards element"
    return found[1]
