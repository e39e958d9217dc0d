"""Prompt-injection attempts in customers' messages, in English and Chinese.

A message that tries to override the assistant's instructions ("ignore previous instructions",
"忽略之前的指令"), to get its system prompt or hidden rules out ("print your system prompt",
"你的提示词是什么"), or to switch it into another persona ("you are now DAN", "developer mode")
is not answered from the knowledge base or the model: the bot replies with a fixed, safe text
and the attempt is written to the audit log. Patterns are deliberately specific: "ignore" or
"prompt" alone is ordinary support language ("can I ignore this e-mail?").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_PATTERNS: list[tuple[str, str]] = [
    # Overriding the instructions.
    (
        "override",
        r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,40}?"
        r"\b(?:previous|prior|above|earlier|all|any|your|the|these|those|system)\b[^.!?\n]{0,20}?"
        r"\b(?:instructions?|prompts?|rules?|guidelines?|directives?|constraints?)\b",
    ),
    (
        "override",
        r"(?:忽略|无视|忘记|忘掉|不要理会|绕过|跳过)[^。！？\n]{0,12}?"
        r"(?:之前|以上|上面|前面|先前|所有|全部|你的|系统)?[^。！？\n]{0,6}?"
        r"(?:指令|指示|提示词?|规则|设定|限制|要求)",
    ),
    # Getting the hidden prompt out.
    (
        "exfiltrate",
        r"\b(?:show|print|reveal|repeat|output|display|tell me|what (?:is|are)|give me|leak|dump)"
        r"\b[^.!?\n]{0,30}?\b(?:system|hidden|initial|original|developer)\s+"
        r"(?:prompts?|instructions?|messages?|rules?)\b",
    ),
    (
        "exfiltrate",
        r"\b(?:repeat|print|output)\b[^.!?\n]{0,20}\b(?:everything|all|the text|words)\b"
        r"[^.!?\n]{0,20}\b(?:above|before this)\b",
    ),
    (
        "exfiltrate",
        # "系统提示我…" ("the system told me") is ordinary: the prompt is 提示词/提示语.
        r"(?:系统提示[词语]|系统指令|隐藏(?:的)?(?:指令|提示词|规则)|初始(?:指令|提示词)"
        r"|你的(?:系统)?提示[词语]|你的指令)",
    ),
    # Another persona.
    (
        "persona",
        r"\b(?:you are now|from now on you are|pretend (?:to be|you are)|act as)\b[^.!?\n]{0,40}"
        r"\b(?:DAN|jailbr(?:ea|o)ken|unfiltered|uncensored"
        r"|without (?:any )?(?:rules|restrictions|limits))\b",
    ),
    ("persona", r"\b(?:developer|god|jailbreak|DAN)\s+mode\b"),
    ("persona", r"(?:越狱|开发者模式|不受(?:任何)?限制的(?:模式|AI|助手)|扮演一个没有限制)"),
]
_COMPILED = [(kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _PATTERNS]


@dataclass(frozen=True)
class InjectionAttempt:
    kind: str  # "override", "exfiltrate" or "persona"
    text: str  # the words that matched


def detect_injection(text: str) -> InjectionAttempt | None:
    """The first prompt-injection pattern the message matches, or None."""
    folded = unicodedata.normalize("NFKC", text)
    for kind, pattern in _COMPILED:
        match = pattern.search(folded)
        if match:
            return InjectionAttempt(kind, match.group(0)[:200])
    return None
