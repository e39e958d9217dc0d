"""Actions a completed form calls: code registers them by name, intents refer to them by name.

An action gets the form's slot values (already validated: order numbers upper-cased, dates as
ISO strings) and returns what the bot tells the customer. It runs inside the conversation's
language (`translation.override`), so `gettext` in an action speaks the customer's language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ActionContext:
    conversation_id: int
    customer_id: int
    language: str
    # The conversation's dialogue state, saved with the reply: an action may keep what the
    # conversation has proven in it (the orders whose contact it confirmed).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionResult:
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    # Set when the action cannot finish the job and a person must (the reason is recorded).
    handoff_reason: str = ""


ActionFunction = Callable[[dict[str, Any], ActionContext], ActionResult]


@dataclass(frozen=True)
class RegisteredAction:
    name: str
    label: str
    function: ActionFunction


_registry: dict[str, RegisteredAction] = {}


def register(name: str, label: str) -> Callable[[ActionFunction], ActionFunction]:
    """Decorator: `@register("order_status_lookup", "Look up an order's status")`."""

    def decorate(function: ActionFunction) -> ActionFunction:
        _registry[name] = RegisteredAction(name, label, function)
        return function

    return decorate


def get(name: str) -> RegisteredAction | None:
    return _registry.get(name)


def choices() -> list[tuple[str, str]]:
    return sorted((action.name, action.label) for action in _registry.values())
