"""Generated answers: the prompt, the streamed draft checked as it grows, the grounding check.

The model is given numbered sources and told to cite them. While the answer streams, text is
released to the customer only up to a point where every fact (number, phone, URL, ...) is
complete, and only once those facts are found in the sources or the conversation, so an
invented phone number is never shown. When the whole answer is in, its grounding score (the
share of its sentences supported by the evidence) must reach the prompt's threshold. A draft
that fails either check is withdrawn and regenerated once with a stricter instruction; a second
failure, a pool that is down, or one slower than the first-token deadline gives the caller a
status instead of text, and the caller sends the extractive answer (or hands off).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from apps.inference import grounding, metrics
from apps.inference.models import GenerationStatus, PromptConfig
from apps.inference.pool import (
    Cancelled,
    DeadlineExceeded,
    EndpointFailed,
    NoEndpointAvailable,
    Pool,
    PoolError,
    StreamStopped,
)
from apps.safety.moderation import Verdict, moderate
from apps.safety.moderation import enabled as moderation_enabled
from apps.safety.pii import redact

DEFAULT_SYSTEM_PROMPT = (
    "You are the customer-support assistant of an online store. Answer the customer's question "
    "using only the numbered sources provided. Cite each source you use with its number in "
    "square brackets, like [1]. Never invent phone numbers, e-mail addresses, links, prices, "
    "dates, durations, order numbers or policies: use only those written in the sources or said "
    "in the conversation. If the sources do not answer the question, say you are not sure and "
    "offer to pass the customer to a human agent. Be brief and friendly: at most four sentences."
)
STRICT_INSTRUCTION = (
    "Your previous draft said things the sources do not support ({spans}). Answer again using "
    "only what the sources say, copying numbers, times, prices and contact details exactly as "
    "written there, and leave out anything they do not cover."
)
LANGUAGE_INSTRUCTION = {
    "zh": "Reply in Simplified Chinese (简体中文).",
    "en": "Reply in English.",
}
SOURCE_CHARS = 1200
HISTORY_TURNS = 6
CITATION_RE = re.compile(r"\s?\[(\d{1,2})\]")


@dataclass
class SourceText:
    number: int
    title: str
    text: str


@dataclass
class GenerationRequest:
    question: str
    language: str
    sources: list[SourceText]
    config: PromptConfig
    history: list[tuple[str, str]] = field(default_factory=list)  # (role, text), oldest first
    summary: str = ""


@dataclass
class Generated:
    """What generation produced. `text` is empty unless `status` is generated/regenerated."""

    status: str
    text: str = ""
    cited: list[int] = field(default_factory=list)  # source numbers, in the order first cited
    endpoint: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_ms: float | None = None
    generation_ms: float | None = None
    grounding_score: float | None = None
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    # A fact of the answer is only in the conversation (the customer's order number, say): the
    # answer is about this customer and must not be cached for others.
    personal: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in (GenerationStatus.GENERATED, GenerationStatus.REGENERATED)


class StreamSink(Protocol):
    """Where a draft goes while it is generated (the conversation's sockets)."""

    id: str

    def update(self, text: str) -> None: ...

    def discard(self) -> None: ...


def build_messages(request: GenerationRequest, strict_spans: list[str] | None = None) -> list[dict]:
    config = request.config
    system = (config.system_prompt or DEFAULT_SYSTEM_PROMPT).strip()
    if config.instructions.strip():
        system += "\n\n" + config.instructions.strip()
    system += "\n\n" + LANGUAGE_INSTRUCTION.get(request.language, LANGUAGE_INSTRUCTION["en"])
    if strict_spans is not None:
        spans = ", ".join(f'"{s}"' for s in strict_spans[:5]) or "unsupported statements"
        system += "\n\n" + STRICT_INSTRUCTION.format(spans=spans)
    sources = "\n\n".join(
        f"[{s.number}] {s.title}\n{s.text[:SOURCE_CHARS]}" for s in request.sources
    )
    messages = [{"role": "system", "content": system}]
    # What the customer wrote reaches the model with personal data (phones, e-mail, ID and card
    # numbers, addresses) replaced by placeholders; the help centre's sources go as written.
    if request.summary:
        summary = redact(request.summary)[0]
        messages.append(
            {"role": "system", "content": f"Summary of the conversation so far:\n{summary}"}
        )
    for role, text in request.history[-HISTORY_TURNS:]:
        messages.append(
            {"role": "user" if role == "customer" else "assistant", "content": redact(text)[0]}
        )
    messages.append(
        {
            "role": "user",
            "content": f"Sources:\n{sources}\n\nCustomer's question: {redact(request.question)[0]}",
        }
    )
    return messages


def renumber_citations(text: str, available: int) -> tuple[str, list[int]]:
    """Keep citations of existing sources, renumbered 1..n in order of first use (the reply
    lists only the cited sources); drop markers that point nowhere."""
    cited: list[int] = []

    def replace(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if not 1 <= number <= available:
            return ""
        if number not in cited:
            cited.append(number)
        return f"{match.group(0)[: -len(match.group(0).lstrip())]}[{cited.index(number) + 1}]"

    return CITATION_RE.sub(replace, text).strip(), cited


class _Draft:
    """The answer as it streams: releases checked text to the sink, stops at a bad fact or at
    a sentence moderation blocks.

    With moderation on, what is about to be shown is moderated first: the sentence the shown
    text ended in last time through the new end, so each sentence is also checked once whole.
    That costs an embedding, so the sink is then updated at most every
    `MODERATION["STREAM_CHECK_SECONDS"]`. Text moderation blocks is never on the screen.
    """

    def __init__(
        self, evidence: grounding.Evidence, stream: StreamSink | None, language: str = ""
    ) -> None:
        self.evidence = evidence
        self.stream = stream
        self.language = language
        self.text = ""
        self.released = 0
        # Where the next moderation check starts: the start of the last sentence shown.
        self.moderated_from = 0
        self.moderating = moderation_enabled()
        self.blocked: Verdict | None = None
        # Checking starts at the sentence the released text ends in: facts never cross a
        # sentence end, and earlier sentences were checked already, so each piece costs one
        # sentence's check, not the whole answer's (which grew quadratically with its length).
        self.checked_from = 0
        self.shown = False
        self.rejected: list[dict[str, Any]] = []
        self.interval = settings.INFERENCE["STREAM_INTERVAL_SECONDS"]
        if self.moderating:
            check = settings.MODERATION.get("STREAM_CHECK_SECONDS", 0.2)
            self.interval = max(self.interval, check)
        self.pushed_at = 0.0

    def on_delta(self, piece: str) -> bool:
        self.text += piece
        text = self.text
        end = grounding.safe_prefix_end(text)
        if end <= self.released:
            return True
        start = self.checked_from
        bad = grounding.unsupported_facts(text[start:end], self.evidence)
        if bad:
            self.rejected = [
                {"kind": f.kind, "text": f.text, "start": f.start + start, "end": f.end + start}
                for f in bad
            ]
            return False
        self.released = end
        self.checked_from = start + grounding.last_sentence_start(text[start:end])
        now = time.monotonic()
        if self.stream is not None and now - self.pushed_at >= self.interval:
            if self.moderating:
                verdict = moderate(text[self.moderated_from : end], self.language or None)
                if verdict.blocked:
                    self.blocked = verdict
                    return False
                self.moderated_from = self.checked_from
            self.pushed_at = now
            self.shown = True
            self.stream.update(text[:end])
        return True

    def withdraw(self) -> None:
        if self.shown and self.stream is not None:
            self.stream.discard()
        self.shown = False


def answer_generate(
    request: GenerationRequest,
    *,
    pool: Pool,
    stream: StreamSink | None = None,
    cancel: threading.Event | None = None,
) -> Generated:
    config = request.config
    source_texts = [f"{s.title}\n{s.text}" for s in request.sources]
    conversation_texts = [text for _, text in request.history]
    conversation_texts += [request.question, request.summary]
    evidence = grounding.Evidence(source_texts + conversation_texts)
    details: dict[str, Any] = {"prompt_version": config.version or 1, "attempts": []}
    if stream is not None:
        details["stream_id"] = stream.id
    strict: list[str] | None = None
    last: Generated | None = None
    started = time.monotonic()
    for attempt in (1, 2):
        draft = _Draft(evidence, stream, request.language)
        try:
            result = pool.chat(
                build_messages(request, strict),
                first_token_deadline=time.monotonic() + config.first_token_deadline,
                max_tokens=config.max_output_tokens,
                temperature=config.temperature,
                on_delta=draft.on_delta,
                cancel=cancel,
            )
        except StreamStopped:
            draft.withdraw()
            if draft.blocked is not None:
                # Offensive text from the model: not written again, the caller answers without it.
                details["moderation"] = _moderation_details(draft.blocked)
                blocked = Generated(GenerationStatus.UNGROUNDED, details=details)
                return _finish(blocked, started, last)
            spans = [f["text"] for f in draft.rejected]
            last = Generated(
                GenerationStatus.UNGROUNDED, grounding_score=0.0, unsupported=draft.rejected
            )
            details["attempts"].append(
                {"rejected_while_streaming": spans, "draft": draft.text[:2000]}
            )
            strict = spans
            continue
        except PoolError as exc:
            draft.withdraw()
            if isinstance(exc, EndpointFailed) and exc.produced_tokens and attempt == 1:
                # The endpoint died mid-answer (the pool retries only requests that produced
                # nothing): the draft is withdrawn and the answer written again elsewhere.
                details["attempts"].append({"error": exc.reason, "broken_after_tokens": True})
                continue
            status = {
                DeadlineExceeded: GenerationStatus.TIMEOUT,
                Cancelled: GenerationStatus.CANCELLED,
            }.get(type(exc), GenerationStatus.UNAVAILABLE)
            if isinstance(exc, EndpointFailed | NoEndpointAvailable) and exc.reason == "timeout":
                status = GenerationStatus.TIMEOUT
            details["error"] = str(exc)[:1000]
            details["attempts"].append({"error": exc.reason})
            return _finish(Generated(status, details=details), started, last)
        text, cited = renumber_citations(result.text, len(request.sources))
        checked = grounding.check(CITATION_RE.sub("", text), evidence)
        generated = Generated(
            GenerationStatus.GENERATED if attempt == 1 else GenerationStatus.REGENERATED,
            text=text,
            cited=cited,
            endpoint=result.endpoint,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            ttft_ms=result.ttft_ms,
            grounding_score=round(checked.score, 3),
            unsupported=checked.unsupported,
            details=details,
        )
        details["attempts"].append(
            {
                "endpoint": result.endpoint,
                "tries": result.attempts,
                "grounding": round(checked.score, 3),
                "errors": result.errors,
            }
        )
        if checked.score >= config.grounding_threshold and not checked.unsupported_facts:
            verdict = moderate(text, request.language or None, each_sentence=True)
            if verdict.blocked:
                draft.withdraw()
                details["moderation"] = _moderation_details(verdict)
                generated.status = GenerationStatus.UNGROUNDED
                generated.text = ""
                return _finish(generated, started, None)
            source_only = grounding.Evidence(source_texts)
            generated.personal = bool(grounding.unsupported_facts(text, source_only))
            return _finish(generated, started, None)
        draft.withdraw()
        details["attempts"][-1]["draft"] = text[:2000]
        generated.status = GenerationStatus.UNGROUNDED
        generated.text = ""
        last = generated
        strict = [u["text"][:80] for u in checked.unsupported] or ["unsupported statements"]
    assert last is not None
    last.details = details
    return _finish(last, started, None)


def _moderation_details(verdict: Verdict) -> dict[str, Any]:
    """What is kept of a blocked answer: why, never its words."""
    return {
        "blocked": True,
        "source": verdict.source,
        "score": None if verdict.score is None else round(verdict.score, 4),
        "categories": list(verdict.categories),
    }


def _finish(generated: Generated, started: float, previous: Generated | None) -> Generated:
    generated.generation_ms = (time.monotonic() - started) * 1000
    if previous is not None and generated.grounding_score is None:
        # A second attempt that failed outright keeps the first attempt's grounding record.
        generated.grounding_score = previous.grounding_score
        generated.unsupported = previous.unsupported
    if not generated.ok:
        metrics.FALLBACKS.labels(generated.status).inc()
    return generated


SUMMARY_PROMPT = (
    "Summarise this customer-support conversation for the human agent taking it over, in at "
    "most five short lines: what the customer wants, details they gave (order numbers, dates), "
    "what the assistant already answered, and what is still open. Write in {language}. Do not "
    "add anything that is not in the conversation."
)


def summary_generate(
    transcript: list[tuple[str, str]], *, language: str, pool: Pool, deadline_seconds: float
) -> str | None:
    """A summary of the conversation from the pool; None when the pool cannot give one in time
    (the caller keeps the extractive summary)."""
    lines = "\n".join(f"{role}: {redact(text[:500])[0]}" for role, text in transcript[-40:])
    name = "Simplified Chinese" if language == "zh" else "English"
    try:
        result = pool.chat(
            [
                {"role": "system", "content": SUMMARY_PROMPT.format(language=name)},
                {"role": "user", "content": lines},
            ],
            first_token_deadline=time.monotonic() + deadline_seconds,
            max_tokens=250,
            temperature=0.0,
        )
    except PoolError as exc:
        metrics.FALLBACKS.labels("summary_" + exc.reason).inc()
        return None
    return result.text.strip() or None
