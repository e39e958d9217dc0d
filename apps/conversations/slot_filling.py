"""Forms: an intent that needs values (an order number, a reason) asks for them one at a time,
checks each, accepts corrections and cancellation, and calls its action when complete.

The open form lives in the conversation's dialogue state:
`{"intent": "return_request", "slots": {"order_number": "LM2026112001"}, "skipped": ["photo"],
"asking": "reason", "attempts": 0}`. The engine calls these inside the message's language
(`translation.override`), so prompts and actions speak it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from apps.core.text import CJK_RE, LATIN_WORD_RE, normalize
from apps.nlu import actions
from apps.nlu.actions import ActionContext, ActionResult
from apps.nlu.entities import Entity, extract_entities

# A customer who fails to give a valid value this many times in a row is passed to a person.
MAX_ATTEMPTS = 3
ENTITY_KINDS = ("order_number", "phone", "email", "amount", "date")

# A cancellation: said first, perhaps after a filler ("never mind", "no, cancel the return",
# "算了"), or a phrase of its own ("I changed my mind", "我不想退了"). English words end at a word
# boundary: a return reason such as "Stopped working" or "Quite small" cancels nothing.
CANCEL_RE = re.compile(
    r"^\s*(?:(?:no|oh|ah|actually|ok|okay|well|sorry|please|just)\b[\s,.!]*)*"
    r"(?:cancel|never ?mind|forget (?:it|about it)|stop|quit)\b"
    r"|^\s*(?:取消|算了|不用了|不要了|不办了|先不|退出|停止)"
    r"|(?:不想|不要)(?:退|查|办)|不(?:退|查|办)了"
    r"|\b(?:cancel (?:it|that|this)|i changed my mind)\b",
    re.IGNORECASE,
)
SKIP_RE = re.compile(
    r"^\s*(跳过|没有|没|不用|不需要|无|skip|no|none|nope|no photo|i don'?t have (?:one|it))\b"
    r"|^\s*(跳过|没有|无|不用)\s*$",
    re.IGNORECASE,
)
URL_RE = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
QUESTION_RE = re.compile(
    r"[?？]\s*$|^(how|what|why|when|where|can|do|does|is|怎么|如何|为什么|什么|能否|可以)"
)


def is_substantial(text: str) -> bool:
    """A sentence rather than a fragment: 4+ English words or 5+ Han characters."""
    return len(CJK_RE.findall(text)) >= 5 or len(LATIN_WORD_RE.findall(text.lower())) >= 4


@dataclass
class FormStep:
    """What one message did to a form. `state` is the form afterwards (None: closed)."""

    replies: list[str]
    state: dict[str, Any] | None
    decision: str = "form"  # "form" (asked or confirmed something) or "action" (completed)
    entities: list[dict[str, Any]] = field(default_factory=list)
    action_result: ActionResult | None = None
    cancelled: bool = False
    handoff_reason: str = ""


def entity_dicts(entities: list[Entity]) -> list[dict[str, Any]]:
    return [
        {"kind": e.kind, "value": e.value, "text": e.text, "start": e.start, "end": e.end}
        for e in entities
    ]


def _slot_label(slot: dict[str, Any]) -> str:
    labels = {
        "order_number": _("order number"),
        "phone": _("mobile number"),
        "email": _("e-mail address"),
        "amount": _("amount"),
        "date": _("date"),
        "photo": _("photo"),
    }
    return labels.get(slot.get("entity", ""), slot["name"].replace("_", " "))


def _prompt(slot: dict[str, Any], language: str) -> str:
    prompt = slot.get("prompt_zh" if language == "zh" else "prompt_en") or ""
    if prompt:
        return str(prompt)
    if not slot.get("required", True):
        return _('Would you like to add a %(slot)s? You can also say "skip".') % {
            "slot": _slot_label(slot)
        }
    return _("Please tell me the %(slot)s.") % {"slot": _slot_label(slot)}


def _invalid(slot: dict[str, Any]) -> str:
    if slot.get("entity") == "order_number":
        return _(
            "That doesn't look like an order number. It starts with two letters followed by "
            "digits, for example LM2026112001."
        )
    if slot.get("entity") == "photo":
        return _('Please send a link to the photo, or say "skip".')
    return _("Sorry, I couldn't read a %(slot)s in that.") % {"slot": _slot_label(slot)}


def _value_for(
    slot: dict[str, Any], text: str, entities: list[Entity], *, asked: bool
) -> Any | None:
    """The slot's value found in `text`, or None. Free-text slots take the whole message, but
    only when that slot was the one asked for."""
    kind = slot.get("entity", "text")
    if kind in ENTITY_KINDS:
        for entity in entities:
            if entity.kind == kind:
                return entity.value
        return None
    if kind == "photo":
        match = URL_RE.search(text)
        return match.group(0) if match else None
    if not asked:
        return None
    cleaned = normalize(text)
    return cleaned if len(cleaned) >= 2 and not CANCEL_RE.search(cleaned) else None


def _next_slot(intent_slots: list[dict[str, Any]], form: dict[str, Any]) -> dict[str, Any] | None:
    for slot in intent_slots:
        if slot["name"] not in form["slots"] and slot["name"] not in form["skipped"]:
            return slot
    return None


def _advance(
    intent: Any,
    form: dict[str, Any],
    language: str,
    context: ActionContext,
    replies: list[str],
    entities: list[dict[str, Any]],
) -> FormStep:
    """Ask for the next missing slot, or run the action when none is missing."""
    slot = _next_slot(intent.slots, form)
    if slot is not None:
        form["asking"] = slot["name"]
        return FormStep([*replies, _prompt(slot, language)], form, entities=entities)
    function = actions.get(intent.action) if intent.action else None
    if function is None:
        values = ", ".join(f"{k}: {v}" for k, v in form["slots"].items())
        text = _("Thank you, I have noted: %(values)s. A colleague will follow up.") % {
            "values": values
        }
        return FormStep([*replies, text], None, decision="action", entities=entities)
    result = function.function(dict(form["slots"]), context)
    if result.data.get("found") is False and "order_number" in form["slots"]:
        # A number that is well-formed but unknown: ask for it again rather than give up.
        form["slots"].pop("order_number")
        form["asking"] = "order_number"
        form["attempts"] = form.get("attempts", 0) + 1
        if form["attempts"] < MAX_ATTEMPTS:
            return FormStep([*replies, result.text], form, entities=entities, action_result=result)
        handoff_reason = "form_failed"
    else:
        handoff_reason = result.handoff_reason
    return FormStep(
        [*replies, result.text],
        None,
        decision="action",
        entities=entities,
        action_result=result,
        handoff_reason=handoff_reason,
    )


def form_start(intent: Any, text: str, language: str, context: ActionContext) -> FormStep:
    """Open the intent's form, taking any values the first message already gives."""
    found = extract_entities(text, language=language)
    form: dict[str, Any] = {
        "intent": intent.name,
        "slots": {},
        "skipped": [],
        "asking": None,
        "attempts": 0,
    }
    for slot in intent.slots:
        value = _value_for(slot, text, found, asked=False)
        if value is not None:
            form["slots"][slot["name"]] = value
    return _advance(intent, form, language, context, [], entity_dicts(found))


def form_continue(
    intent: Any, form: dict[str, Any], text: str, language: str, context: ActionContext
) -> FormStep | None:
    """One customer message while a form is open. None: the message is not about the form
    (a question of its own); the caller closes the form and handles it as a new message."""
    if CANCEL_RE.search(normalize(text)):
        return FormStep([_("OK, I've cancelled that.")], None, cancelled=True)
    found = extract_entities(text, language=language)
    entities = entity_dicts(found)
    slots_by_name = {slot["name"]: slot for slot in intent.slots}
    asking = slots_by_name.get(form.get("asking") or "")
    replies: list[str] = []
    # Corrections: a value for a slot already filled ("不对，订单号是 …").
    for slot in intent.slots:
        if slot["name"] == form.get("asking") or slot["name"] not in form["slots"]:
            continue
        value = _value_for(slot, text, found, asked=False)
        if value is not None and value != form["slots"][slot["name"]]:
            form["slots"][slot["name"]] = value
            replies.append(
                _("Got it, the %(slot)s is now %(value)s.")
                % {"slot": _slot_label(slot), "value": value}
            )
    if asking is not None:
        # A message that corrected an earlier value is not also the free-text answer.
        value = _value_for(asking, text, found, asked=not replies)
        # Nor is its "no, …" a "no" to an optional slot: the slot is asked for again.
        if (
            value is None
            and not replies
            and not asking.get("required", True)
            and SKIP_RE.search(text)
        ):
            form["skipped"].append(asking["name"])
            return _advance(intent, form, language, context, replies, entities)
        if value is not None:
            form["slots"][asking["name"]] = value
            return _advance(intent, form, language, context, replies, entities)
        if replies:  # a correction only; ask again for what is missing
            return FormStep([*replies, _prompt(asking, language)], form, entities=entities)
        if not found and (
            QUESTION_RE.search(normalize(text).lower())
            or (asking.get("entity") != "text" and is_substantial(text))
        ):
            return None  # a question or request of its own: the customer moved on
        form["attempts"] = form.get("attempts", 0) + 1
        if form["attempts"] >= MAX_ATTEMPTS:
            return FormStep(
                [_("I'm having trouble with this, so I'll pass you to a colleague.")],
                None,
                entities=entities,
                handoff_reason="form_failed",
            )
        return FormStep([_invalid(asking), _prompt(asking, language)], form, entities=entities)
    return _advance(intent, form, language, context, replies, entities)
