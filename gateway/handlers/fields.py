"""The field checks every front's body reader shares: a missing field passes (the worker's default
applies), one of the wrong type is a 400 naming it. Each front keeps its own rules about what the
fields mean; these only say what type they must be."""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest


def boolean(data: dict[str, Any], key: str) -> None:
    if data.get(key) is not None and not isinstance(data[key], bool):
        raise BadRequest(f"{key} must be true or false")


def numbers(data: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"{key} must be a number")


def positive_int(data: dict[str, Any], key: str) -> None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadRequest(f"{key} must be a positive integer")


def listed(data: dict[str, Any], key: str) -> list[Any]:
    """A list field's items ([] when it is absent)."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{key} must be a list")
    return value


def model(data: dict[str, Any]) -> str:
    """The model a body names (the front's own key, "model")."""
    value = data.get("model")
    if value is None or value == "":
        raise BadRequest("model is required")
    if not isinstance(value, str):
        raise BadRequest(f"model must be a string, got {type(value).__name__}")
    return value


def messages(data: dict[str, Any]) -> list[Any]:
    """A chat body's messages: a list of at least one (each front checks the messages' own shape)."""
    given = data.get("messages")
    if not isinstance(given, list) or not given:
        raise BadRequest("messages must be a non-empty list of message objects")
    return given
