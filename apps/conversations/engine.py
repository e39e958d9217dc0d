"""The dialogue engine: decides what the bot does with one customer message.

Order of the checks (each one records its outcome on the message):
1. Conversation with a person (waiting or live): the bot stays quiet.
2. A prompt-injection attempt, or a message moderation blocks: a fixed, polite reply.
3. Explicit request for a person ("转人工", "human", the button) or anger: hand off.
4. An open form: the message fills, corrects or cancels it. A question asked instead of a
   free-text value (the reason for a return) goes through the steps below with the form kept,
   and the value is asked for again after the answer.
   An acknowledgement ("ok", "好的", a lone "?") where a value is asked asks for it again.
5. An acknowledgement: a short reply, nothing searched; the "not sure" streak, the choices
   offered and the topic stay as they were.
6. One of the articles the last reply offered ("Which of these do you mean?", or the
   suggestions with "not sure"), chosen by its title: answered from that article.
7. Exact answer cache, then the semantic answer cache; not for a follow-up that leans on the
   previous question ("how long does that take?", "那要多久"), whose answer is never cached.
8. Intent (NLU): hand-off intents, forms, fixed responses. A form intent gives way to an
   article that clearly matches better (a how-to question, "cancel my order"). A question about
   its topic that no article answers confidently ("can opened makeup be returned?") is offered
   the nearest articles and the choice that starts the form, when staff named that choice.
9. Retrieval (a follow-up searched with the previous question searched): answer from
   the best source with its citation, ask which one when the top sources are equally good, or
   say "not sure"; twice not sure in a row (or clearly out of scope) hands off.

Moderation (apps.safety) looks at the customer's message right after the prompt-injection
check, and at every answer before it is sent: a blocked message gets a polite reply and never
reaches the caches, the intents, search or the model (an angry one the classifier blocked is
handed off instead); a blocked answer is not sent (nor cached) and the customer is told the
bot is not sure.

`decide` only reads; `services.message_process` writes what it returns. The one exception is a
moderation flag for staff (ids and scores, no text), recorded at once by the safety service.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from apps.conversations import caches, slot_filling
from apps.conversations.models import Conversation, ConversationStatus, Decision, Role
from apps.core.text import CJK_RE, LATIN_WORD_RE, detect_language, normalize
from apps.inference import selectors as inference_selectors
from apps.inference.generation import (
    HISTORY_TURNS,
    Generated,
    GenerationRequest,
    SourceText,
    StreamSink,
    answer_generate,
)
from apps.knowledge import index_events
from apps.knowledge import selectors as knowledge_selectors
from apps.knowledge.chunking import readable_lines
from apps.knowledge.embeddings import EmbeddingError
from apps.nlu import selectors as nlu_selectors
from apps.nlu.actions import ActionContext
from apps.nlu.entities import extract_entities
from apps.nlu.sentiment import is_angry
from apps.safety import pii
from apps.safety.injection import detect_injection
from apps.safety.models import FlagDirection, FlagSource
from apps.safety.moderation import Verdict, moderate
from apps.safety.services import moderation_flag_record

logger = logging.getLogger(__name__)

# A person, as customers name one: "an agent", "a real person", "your support team". Not when
# the word names something else: "the agent fee", "human hair", "customer service hours".
_PERSON = (
    r"(?:(?:an?|the|your|some|one of your)\s+)?"
    r"(?:(?:real|live|actual|human|proper|customer|support|service)\s+){0,2}"
    r"(?:agent|person|human|staff|representative|rep|operator|manager|supervisor"
    r"|customer (?:service|support|care)|support (?:team|staff)|team member)"
    r"(?![\w'’-]|\s+(?:fees?|codes?|ids?|numbers?|commissions?|programm?e?s?|accounts?"
    r"|licen[cs]es?|discounts?|prices?|hours?|times?|hair|resources|rights|error))"
)
_SOMEONE = r"(?:someone|somebody|anyone|anybody|a person)\b"
# What a person named in a message would do about the delivery rather than for the customer: "a
# person to sign for the parcel", "someone to collect it", "a real person who can receive it",
# "does a real person have to be home". A question about delivery, not a request to talk to one
# ("I need someone to talk to", "a person to help me" name no errand and still ask for one).
_ERRAND = (
    r"\s+(?:(?:who|that)\s+)?"
    r"(?:(?:to|can|could|will|would|must|should|may|has\s+to|have\s+to|needs?\s+to)\s+)?"
    r"(?:sign|collect|pick|receive|accept|deliver|drop|bring|carry|install|assemble"
    r"|be\s+(?:at\s+)?(?:home|there|present|in|around)|at\s+(?:home|the\s+(?:door|address))"
    r"|take\s+(?:in\s+)?(?:the\s+|my\s+)?(?:delivery|parcel|package|it|them)"
    r"|for\s+(?:the\s+|my\s+)?(?:delivery|parcel|package|signature|collection))\b"
)
# The same in Chinese, after 真人 or 人工: 签收, 签字, 代收, 取件, 在家 ("需要真人签收吗").
_ERRAND_ZH = (
    r"(?:来|去|帮我|帮忙|替我|代我|亲自)?"
    r"(?:签|代收|收货|收件|收快递|取件|取货|领取|在家|到场|在场)"
)
# An explicit request for a person. Chinese: 转人工, 人工客服, 找人工, 转接客服, 跟真人说话, 找个真
# 人, 我需要一个真人; not 真人照片 or 真人秀 (photos, shows), 人工智能 (the bot itself), 代理商
# (resellers), 需要真人签收吗 (an errand, see `_ERRAND_ZH`), nor 我要投诉 on its own (a
# complaint, which the bot can still take). English: "connect me to an agent", "I need a real
# person", "I need someone to talk to", "can I speak to someone", "representative"; not a
# person for an errand (`_ERRAND`).
HUMAN_REQUEST_RE = re.compile(
    r"转接?(?:人工|客服)|人工(?:客服|服务|坐席|台)|人工[\W_]*$|客服人员"
    rf"|(?:找|要|接|叫|换)(?:一?个)?人工(?!{_ERRAND_ZH})"
    r"|(?:跟|和|与)真人(?:说|聊|沟通|对话|交流)"
    rf"|(?:找|要|换|接|让|叫)(?:一?个)?真人(?!{_ERRAND_ZH})"
    r"|真人(?:客服|服务|回复|回答|聊|说话|沟通|对话)|^\W*真人\W*$"
    rf"|\b(?:talk|speak|chat|get in touch)(?: directly)? (?:to|with) (?:{_PERSON}|{_SOMEONE})"
    r"|\b(?:connect|put|transfer|pass|hand|send|forward)(?: me)?(?: (?:through|over|on))?"
    rf" (?:to|with) (?:{_PERSON}|{_SOMEONE})"
    r"|\b(?:i|we)(?: (?:really |just )?(?:need|want|wanna)| would like|['’]d like)"
    rf" (?:to (?:have|get) )?(?:{_PERSON}|{_SOMEONE})(?!{_ERRAND})"
    rf"|\b(?:can|could|may) (?:i|we) (?:have|get|see) {_PERSON}(?!{_ERRAND})"
    rf"|\b(?:get|give|find) me (?:{_PERSON}|{_SOMEONE})(?!{_ERRAND})"
    rf"|\b(?:real|live|actual) (?:person|human|people|agent)\b(?!{_ERRAND})"
    r"|\brepresentative\b"
    rf"|\bhuman\b(?![\w'’-]|\s+(?:hair|resources|rights|error|body|nature)|{_ERRAND})"
    r"|^\W*(?:please[\s,]+)?(?:an?\s+|the\s+)?operator(?:[\s,]+please)?\W*$",
    re.IGNORECASE,
)
# A how-to question ("how do I return an item?", "怎么退货") about what a form does.
HOW_TO_RE = re.compile(
    r"^\s*(?:how (?:do|can|should) (?:i|we|you)|how to|what is the (?:process|policy)|can i)\b"
    r"|\bwhat (?:do|should|can) (?:i|we) do\b"
    r"|怎么|如何|怎样|流程|规定|政策",
    re.IGNORECASE,
)
# A question about a form's topic, rather than a request to start the form: "can opened makeup
# be returned?", "do I get the shipping fee back on a return?", "where do I start a return?",
# "能退吗", "运费退不退". Not "I want to return this" or "我要退货", nor "can you ..." (a request
# put politely).
ASKS_RE = re.compile(
    r"[?？]\s*$"
    r"|^\s*(?:can|could|may|do|does|did|is|are|will|would|should|what|which|when|where|why|how)"
    r"\b(?!\s+you\b)"
    r"|\b(?:can|could|may|will|would|do|does|is|are)\s+(?:i|we|it|they|this|that|these|those)\b"
    r"|[吗么嘛]\W*$|能不能|可不可以|可以不|是否|会不会|有没有|(\w)不\1",
    re.IGNORECASE,
)
# An acknowledgement that says nothing to act on: "ok", "got it", "I see", "好的", "嗯嗯", "收到"
# (in any mix: "ok cool", "哦哦好的", "好的ok"). Not with thanks or a farewell ("ok thanks",
# "好的，再见"): the thanks and goodbye intents answer those.
_ACK_EN = (
    r"(?:ok(?:ay|ey|ie|i)?|k+|alright|all right|right|got it|gotcha|cool|i see|see|understood"
    r"|i understand|noted|fine|good|great|nice|perfect|awesome|makes sense|that makes sense"
    r"|sounds good|will do|sure|yes|yeah|yep|yup|ya|oh|ah|aha|hmm+|hm+|um+|uh|mhm|wow"
    r"|i got it|ok then|okay then)"
)
ACK_EN_RE = re.compile(rf"{_ACK_EN}(?: {_ACK_EN})*")
ACK_ZH_RE = re.compile(
    r"(?:(?:好的?|好吧|好嘞|好滴|嗯+|恩+|哦+|噢+|喔+|额+|呃+|行吧?|可以|知道|我?知道了|收到|明白|我?明白了"
    r"|了解|了解了|懂了|我懂了|对|是的|原来如此|原来是这样|这样啊|没问题|ok|okay|k)"
    r"[了啊呀啦吧呢哈的滴嘞哒]*)+"
)
# Acknowledgements that also say yes, or ask: what the customer wants is still to come.
_AFFIRMATIVE_RE = re.compile(r"\b(?:sure|yes|yeah|yep|yup|ya)\b|对|是的|可以")
# A short question that leans on the previous one: "how long does that take?", "what about
# international?", "and for returns?", "why?", "那要多久", "关税呢", "为啥". Its meaning depends on
# the conversation, so it is searched with the previous question, and never answered from, nor
# written to, the answer caches. A pronoun ends the English question or nearly ("is it free?",
# "how do I get there?"), so "is it possible to pay by card" and "is there free shipping" are
# questions of their own.
_LEAD_EN = r"(?:(?:ok|okay|so|and|but|also|then|well|oh|hmm)[\s,]+)*"
_BACK_EN = r"(?:that|this|it|those|these|them|(?<!is )(?<!are )there)"
FOLLOW_UP_EN_RE = re.compile(
    rf"^{_LEAD_EN}(?:what|how) about\b"
    r"|^and(?:[\s,]+[\w'’-]+){1,3}\W*$"
    r"|^(?:why|how|when|where|how long|how much|how come|how so|what for|why not|really|such as"
    r"|like what|for example)\W*$"
    rf"|^{_LEAD_EN}(?:what|how|why|when|where|which|is|are|was|does|do|did|can|could|will|would"
    rf"|should)\b(?:[\s,]+[\w'’-]+)*?[\s,]+{_BACK_EN}(?:[\s,]+[\w'’-]+){{0,2}}\W*$",
    re.IGNORECASE,
)
FOLLOW_UP_ZH_RE = re.compile(
    r"^(?:那|这|它)(?![里边儿])"
    r"|呢\W*$"
    r"|^(?:为什么|为啥|咋了|怎么回事|咋回事|然后|多久|要多久|多少钱|怎么办|怎么弄|比如说?)\W*$"
    r"|^(?:都|还|具体)?有(?:什么|哪些)(?:好处|用处?|作用|区别|条件|要求|限制|规定)吗?\W*$"
)
# A follow-up longer than this (words, or Han characters) says enough on its own.
FOLLOW_UP_MAX_WORDS = 8
FOLLOW_UP_MAX_HAN = 12
# The previous question kept for a follow-up is cut to this many characters.
TOPIC_CHARS = 300
# An answer longer than this is cut at a sentence end, with the source link for the rest.
MAX_ANSWER_CHARS = 700
# A question about something that ended within this long (a promotion) is told it is over: a
# year, so "春季焕新节还有吗" in November still hears that the spring sale ended in March.
ENDED_LOOKBACK = timedelta(days=365)
# "Not sure" offers the two nearest articles only from this confidence: on the demo, a
# fragment ("membership" 0.23, "积分" 0.46) is worth a guess, "asdfgh" (0.0001) or "are you
# hiring" (0.0005) is not, and "Did you mean one of these?" beside unrelated titles reads badly.
SUGGESTION_MIN_CONFIDENCE = 0.01
# The confidence recorded on an answer to an article the customer chose from those offered:
# they said which one they mean, so no search score applies.
CHOSEN_CONFIDENCE = 1.0


@dataclass
class Reply:
    text: str
    decision: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    confidence: float | None = None
    cache_hit: str = ""
    generated: Generated | None = None


@dataclass
class Generation:
    """What the engine needs to generate an answer for one message: where its draft streams,
    and the flag that says the customer went away."""

    before_seq: int | None = None
    stream_factory: Callable[[], StreamSink | None] | None = None
    cancel: threading.Event | None = None


@dataclass
class Outcome:
    """What the engine decided about one customer message."""

    decision: str
    language: str
    replies: list[Reply] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    intent: str = ""
    intent_confidence: float | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    handoff_reason: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    # A security event to record with the message (a prompt-injection attempt).
    security: dict[str, Any] = field(default_factory=dict)


def message_language(text: str, current: str) -> str:
    """The message's language; a message with too few letters to tell (an order number, "ok")
    keeps the conversation's."""
    if CJK_RE.search(text):
        return detect_language(text)
    if len(LATIN_WORD_RE.findall(text.lower())) >= 2 and not re.fullmatch(r"[\w\s.-]{0,16}", text):
        return "en"
    return current or detect_language(text)


def is_acknowledgement(text: str) -> bool:
    """Whether `text` only acknowledges ("ok", "got it", "好的", "嗯嗯") or is punctuation alone
    ("?", "？", "..."): nothing to search, no intent, no "not sure"."""
    cleaned = normalize(text).lower()
    if not cleaned.strip():
        return False
    if not any(ch.isalnum() for ch in cleaned):
        return True
    words = re.sub(r"[\W_]+", " ", cleaned).strip()
    if CJK_RE.search(words):
        return bool(ACK_ZH_RE.fullmatch(words.replace(" ", "")))
    return bool(ACK_EN_RE.fullmatch(words))


def is_follow_up(text: str) -> bool:
    """Whether `text` is a short question that leans on the previous one (see
    `FOLLOW_UP_EN_RE`)."""
    cleaned = normalize(text).strip()
    if CJK_RE.search(cleaned):
        compact = re.sub(r"\s+", "", cleaned)
        return len(CJK_RE.findall(compact)) <= FOLLOW_UP_MAX_HAN and bool(
            FOLLOW_UP_ZH_RE.search(compact)
        )
    words = LATIN_WORD_RE.findall(cleaned.lower())
    return 0 < len(words) <= FOLLOW_UP_MAX_WORDS and bool(FOLLOW_UP_EN_RE.search(cleaned))


def django_language(language: str) -> str:
    return "zh-hans" if language == "zh" else "en"


def source_dict(source: knowledge_selectors.Source) -> dict[str, Any]:
    return {
        "article_id": source.article_id,
        "title": source.title,
        "url": reverse("help-article", args=[source.article_id]),
    }


def answer_expiry(kb_id: int, sources: Iterable[knowledge_selectors.Source]) -> datetime | None:
    """When an answer made from `sources` must stop being served from the answer caches: the
    first end of validity (`valid_until`) among their articles, or the next opening of an
    article in the base (it may answer better), whichever comes first. Both pass with no edit,
    so no new index version makes the cached answer unreachable."""
    times = [
        s.article.valid_until
        for s in sources
        if s.article is not None and s.article.valid_until is not None
    ]
    opening = index_events.next_opening(kb_id)
    if opening is not None:
        times.append(opening)
    return min(times, default=None)


def extract_answer(source: knowledge_selectors.Source) -> str:
    """The answer's text, taken from the best source: an FAQ's answer, or the guide's section
    the best chunk comes from. Markdown marks are dropped; long text is cut at a sentence."""
    article = source.article
    if article is not None and article.kind == "faq":
        body = article.body
    elif source.passage_text:
        # The guide matched on its title or an alternative question: the section search chose
        # for the question's words ("金卡会员有什么权益" quotes the benefits, not the intro).
        body = source.passage_text
    elif article is not None and source.chunk_text in (article.title, *article.questions):
        # The same without a chosen section (an offered title): answer with its start.
        first = article.chunks.filter(kind="body").order_by("position").first()
        body = first.text if first is not None else article.body
    else:
        body = source.chunk_text
    lines = readable_lines(body)
    text = "\n".join(line for line in lines if line and not line.startswith("#"))
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    cut = text[:MAX_ANSWER_CHARS]
    ends = [cut.rfind(mark) for mark in ("。", "！", "？", ". ", "! ", "? ", "\n")]
    end = max(ends)
    return (cut[: end + 1] if end > MAX_ANSWER_CHARS // 3 else cut).rstrip() + " …"


def choice_key(text: str) -> str:
    """A title or message as choices are compared: case, white space and punctuation aside
    ("下单后还能改地址吗？" is the choice "下单后还能改地址吗")."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _offer(state: dict[str, Any], sources: Iterable[knowledge_selectors.Source]) -> None:
    """Remember the articles a reply offers as choices, for the customer's next message only
    (`_decide` takes them out of the state before anything else)."""
    state["offered"] = [
        {
            "article_id": s.article_id,
            "title": s.title,
            # The section a guide would be quoted from, when search chose one.
            "chunk_id": s.passage_chunk_id or s.chunk_id,
        }
        for s in sources
    ]


def _offered_choice(offered: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    """The offer whose title the message is, if any."""
    key = choice_key(text)
    return next((o for o in offered if key and choice_key(str(o.get("title", ""))) == key), None)


def _chosen(kb_id: int, offer: dict[str, Any]) -> knowledge_selectors.Source | None:
    """The article of the offer the customer chose, as a source to answer from; None when the
    offer is no article (the start of a form), or that article may no longer be shown
    (unpublished, out of its validity window, or moved to another knowledge base since it was
    offered)."""
    if "article_id" not in offer:
        return None
    article = knowledge_selectors.article_visible_get(int(offer["article_id"]))
    if article is None or article.knowledge_base_id != kb_id:
        return None
    # The passage that matched when it was offered (a guide's section), while the article still
    # has it; else the article's title, which `extract_answer` reads as "from the start".
    chunk = article.chunks.filter(pk=int(offer.get("chunk_id") or 0), is_searchable=True).first()
    return knowledge_selectors.Source(
        article_id=article.pk,
        title=article.title,
        chunk_id=chunk.pk if chunk is not None else 0,
        chunk_text=chunk.text if chunk is not None else article.title,
        heading=chunk.heading if chunk is not None else article.title,
        dense_score=0.0,
        keyword_score=0.0,
        fused_score=0.0,
        dense_rank=None,
        keyword_rank=None,
        article=article,
    )


def _answer_chosen(
    outcome: Outcome,
    source: knowledge_selectors.Source,
    generation: Generation,
    conversation: Conversation,
) -> Outcome | None:
    """Answer with the chosen article's own text and its citation (no search, nothing cached:
    the message is only a title). None when moderation withholds the text."""
    text = extract_answer(source)
    verdict = moderate(text, outcome.language, recurring=True)
    if verdict.blocked:
        _flag(conversation, generation, FlagDirection.OUTPUT, verdict)
        return None
    outcome.decision = Decision.ANSWER
    outcome.replies.append(
        Reply(text, Decision.ANSWER, [source_dict(source)], confidence=CHOSEN_CONFIDENCE)
    )
    return outcome


def _handoff(outcome: Outcome, reason: str, state: dict[str, Any]) -> Outcome:
    outcome.decision = Decision.HANDOFF
    outcome.handoff_reason = reason
    state.pop("form", None)
    state["low_confidence_streak"] = 0
    return outcome


def _form_step(outcome: Outcome, step: slot_filling.FormStep, state: dict[str, Any]) -> Outcome:
    """Record what a form step did: its entities, the form left open (or closed), its reply,
    and a handoff when the form gave up."""
    outcome.entities = step.entities
    if step.state is None:
        state.pop("form", None)
    else:
        state["form"] = step.state
    text = "\n".join(step.replies)
    if step.handoff_reason:
        outcome.replies.append(Reply(text, Decision.FORM))
        return _handoff(outcome, step.handoff_reason, state)
    outcome.replies.append(Reply(text, step.decision))
    outcome.decision = step.decision
    return outcome


def exact_answer_ready(conversation: Conversation, text: str) -> bool:
    """Whether `decide` will most likely answer `text` from the exact cache: the bot has the
    conversation, no form is open, and the question is cached. Cheap (no embedding, no search,
    no database: only cache reads); `decide` still runs every check first, so a wrong guess
    here only costs a queue."""
    if conversation.status != ConversationStatus.BOT or (conversation.state or {}).get("form"):
        return False
    if is_acknowledgement(text) or is_follow_up(text):
        return False  # never answered from the caches
    language = message_language(text, conversation.language)
    query = pii.remove(text) or text
    return caches.AnswerCache(conversation.knowledge_base_id, language).exact_get(query) is not None


def decide(conversation: Conversation, text: str, generation: Generation | None = None) -> Outcome:
    language = message_language(text, conversation.language)
    with translation.override(django_language(language)):
        return _decide(conversation, text, language, generation or Generation())


def _decide(
    conversation: Conversation, text: str, language: str, generation: Generation
) -> Outcome:
    state = dict(conversation.state or {})
    # Choices offered by the last reply count for this message only, whatever it turns out to be.
    offered = state.pop("offered", None) or []
    # So does the question searched last, for a follow-up that leans on it, and the article
    # its answer came from.
    topic = str(state.pop("topic", None) or "")
    topic_article = state.pop("topic_article", None)
    outcome = Outcome(decision=Decision.FALLBACK, language=language, state=state)

    if conversation.status in (ConversationStatus.WAITING_AGENT, ConversationStatus.AGENT):
        outcome.decision = Decision.AGENT_WAIT
        return outcome
    # "Not sure" twice in a row hands off; any other reply (an answer, a template, a form, a
    # guard's refusal, a cached answer) ends the streak.
    previous_streak = int(state.get("low_confidence_streak", 0))
    state["low_confidence_streak"] = 0
    attempt = detect_injection(text)
    if attempt is not None:
        # Never searched, never sent to the model: a fixed reply, and the attempt is recorded.
        outcome.decision = Decision.GUARD
        outcome.security = {"reason": "prompt_injection", "kind": attempt.kind}
        outcome.replies.append(
            Reply(
                _(
                    "I can only help with questions about our store, your orders and your "
                    "account. What can I help you with?"
                ),
                Decision.GUARD,
            )
        )
        return outcome
    verdict = moderate(text, language)
    if verdict.blocked and verdict.source == FlagSource.CLASSIFIER and is_angry(text):
        # An angry complaint ("什么破服务，垃圾！") reads as offensive to the classifier, but the
        # customer needs a person more than a refusal: it goes on to the anger hand-off below,
        # flagged. Terms staff put in the lexicon to block are refused whatever the mood.
        verdict = replace(verdict, blocked=False)
    if verdict.flagged:
        _flag(conversation, generation, FlagDirection.INPUT, verdict)
    if verdict.blocked:
        # Like an injection attempt: a fixed reply, nothing searched or generated, and a
        # security event (ids only) besides the flag staff review.
        outcome.decision = Decision.GUARD
        outcome.security = {
            "reason": "moderation",
            "source": verdict.source,
            "categories": list(verdict.categories),
        }
        outcome.replies.append(
            Reply(
                _(
                    "I'm sorry, I can't respond to messages like that. I'm happy to help with "
                    "your orders, deliveries, returns or account: what can I do for you?"
                ),
                Decision.GUARD,
            )
        )
        return outcome
    if HUMAN_REQUEST_RE.search(normalize(text)):
        return _handoff(outcome, "customer_request", state)
    if is_angry(text):
        return _handoff(outcome, "anger", state)

    context = ActionContext(conversation.pk, conversation.customer_id, language, state)

    def respond() -> Outcome:
        """The message handled as one no open form takes (see `_respond`)."""
        work = (generation, context)
        return _respond(
            outcome, conversation, text, offered, previous_streak, work, (topic, topic_article)
        )

    form = state.get("form")
    if form:
        intent = nlu_selectors.intent_get(form["intent"])
        step = None
        acknowledgement = is_acknowledgement(text)
        if intent is not None and _offered_choice(offered, text) is not None:
            # A suggestion tapped after a "not sure" to a question asked aside (no other reply
            # offers any while a form is open): the article is wanted, not taken for the value.
            step = slot_filling.form_aside(intent, form, language)
        if intent is not None and step is None:
            if acknowledgement and slot_filling.asks_free_text(intent, form):
                # "ok" or "好的" where the reason for a return is asked is no reason: it is
                # asked for again.
                step = _asked_again(intent, form, language)
            else:
                step = slot_filling.form_continue(intent, form, text, language, context)
            if step is None and acknowledgement:
                # "?" where an order number is asked leaves the form no more than it counts as
                # a wrong value: the number is asked for again.
                step = _asked_again(intent, form, language)
        if intent is None or step is None:
            # The intent is gone, or the customer moved on to something else: the form closes
            # and the message is handled as a new one.
            state.pop("form", None)
        elif step.aside:
            # A question asked while the form waits for a value ("how long does a refund take?"
            # where the reason is asked): handled as a new message, with the form kept, and the
            # value asked for again after the answer, unless the answer ended the form (a
            # hand-off).
            state["form"] = step.state
            answered = respond()
            if state.get("form") is step.state and answered.decision != Decision.HANDOFF:
                answered.replies.append(Reply("\n".join(step.replies), Decision.FORM))
            return answered
        else:
            outcome.intent = intent.name
            return _form_step(outcome, step, state)
    return respond()


def _asked_again(intent: Any, form: dict[str, Any], language: str) -> slot_filling.FormStep | None:
    """The open form's value asked for again, nothing else changed (no attempt counted)."""
    step = slot_filling.form_aside(intent, form, language)
    return replace(step, aside=False) if step is not None else None


def _acknowledge(
    outcome: Outcome,
    conversation: Conversation,
    text: str,
    offered: list[dict[str, Any]],
    previous_streak: int,
    topic: tuple[str, Any],
) -> Outcome:
    """A short reply to an acknowledgement ("ok", "好的") or a lone "?": nothing is searched or
    suggested, and what the conversation was at stays as it was: the "not sure" streak (an "ok"
    neither counts as not understood nor makes up for it), the choices offered, the topic."""
    state = outcome.state
    state["low_confidence_streak"] = previous_streak
    if offered:
        state["offered"] = offered
    question, article_id = topic
    if question:
        state["topic"] = question
    if article_id is not None:
        state["topic_article"] = article_id
    asks = "?" in normalize(text) or bool(_AFFIRMATIVE_RE.search(normalize(text).lower()))
    if asks or not conversation.messages.filter(role=Role.BOT).exists():
        reply = _(
            "What would you like to know? You can ask about orders, deliveries, returns or your "
            "account."
        )
    else:
        reply = _("Is there anything else I can help you with?")
    outcome.decision = Decision.TEMPLATE
    outcome.replies.append(Reply(reply, Decision.TEMPLATE))
    return outcome


def _respond(
    outcome: Outcome,
    conversation: Conversation,
    text: str,
    offered: list[dict[str, Any]],
    previous_streak: int,
    work: tuple[Generation, ActionContext],
    topic: tuple[str, Any] = ("", None),
) -> Outcome:
    """A message no open form takes: an acknowledgement, a choice among the articles offered,
    the answer caches, the intents, then search ("not sure" when nothing answers). A question
    searched is kept as the topic a follow-up ("how long does that take?") is searched with,
    with the article its answer came from. `topic`: the previous message's (question, article
    id or None)."""
    if is_acknowledgement(text):
        return _acknowledge(outcome, conversation, text, offered, previous_streak, topic)
    follow_up = is_follow_up(text)
    answered = _respond_to(
        outcome,
        conversation,
        text,
        offered,
        previous_streak,
        work,
        topic if follow_up else None,
    )
    if answered.decision in (Decision.ANSWER, Decision.CLARIFY, Decision.FALLBACK):
        # A question searched, answered or not, is what the next message may lean on; a
        # follow-up keeps the question it leaned on ("能寄到美国吗" → "那要多久" → "关税呢").
        question = topic[0] if follow_up else normalize(pii.remove(text) or text)
        if question:
            answered.state["topic"] = question[:TOPIC_CHARS]
        first = answered.replies[0] if answered.replies else None
        if answered.decision == Decision.ANSWER and first is not None and first.sources:
            answered.state["topic_article"] = int(first.sources[0]["article_id"])
    return answered


def _respond_to(
    outcome: Outcome,
    conversation: Conversation,
    text: str,
    offered: list[dict[str, Any]],
    previous_streak: int,
    work: tuple[Generation, ActionContext],
    leans_on: tuple[str, Any] | None,
) -> Outcome:
    """`_respond` for a message that is not an acknowledgement. `leans_on` is None unless the
    message is a follow-up; then it is the question it leans on ("" when none) and the article
    that answered it (None when none did)."""
    generation, context = work
    topic, topic_article = leans_on if leans_on is not None else (None, None)
    state, language, timings = outcome.state, outcome.language, outcome.timings_ms
    offer = _offered_choice(offered, text) if offered else None
    if offer is not None and offer.get("intent"):
        # The choice that starts a form, offered beside articles (`_form_offer`).
        intent = nlu_selectors.intent_get(str(offer["intent"]))
        if intent is not None and intent.slots:
            outcome.intent, outcome.intent_confidence = intent.name, CHOSEN_CONFIDENCE
            return _form_step(
                outcome, slot_filling.form_start(intent, text, language, context), state
            )
    if offer is not None:
        # A choice the customer tapped (the widget sends its title) or typed: answered from that
        # article without a search, whose score for a bare title can be low (two near-duplicate
        # articles share it), so a choice never counts as "not sure".
        chosen = _chosen(conversation.knowledge_base_id, offer)
        if chosen is not None:
            answered = _answer_chosen(outcome, chosen, generation, conversation)
            if answered is not None:
                return answered

    kb = conversation.knowledge_base
    # What the question is about, without the customer's personal data: a phone number only
    # blurs a search. (Forms still read the whole text; the caches take it out themselves.)
    query = pii.remove(text) or text
    answers = caches.AnswerCache(kb, language)
    # A follow-up means what the conversation before it says: no cached answer fits it, and its
    # answer fits no other conversation.
    cacheable = topic is None
    vector, embedder = None, ""
    if cacheable:
        started = time.perf_counter()
        cached = answers.exact_get(query)
        timings["exact_cache"] = (time.perf_counter() - started) * 1000
        if cached is not None:
            return _answer_from_cache(outcome, cached, "exact")

        # The semantic cache comes before the intents (as the message path in DESIGN.md has it):
        # a hit costs one embedding, and only answers from the knowledge base are ever cached,
        # so a question close to one of them is no form or fixed response either.
        started = time.perf_counter()
        try:
            vector, embedder = knowledge_selectors.query_embedding(kb, normalize(query), language)
            hit = answers.semantic_get(embedder, vector)
        except EmbeddingError as exc:
            logger.warning("semantic cache skipped: %s", exc)
            hit = None
        timings["semantic_cache"] = (time.perf_counter() - started) * 1000
        if hit is not None:
            answers.exact_set(query, hit[0])  # the next identical one is cheaper
            return _answer_from_cache(outcome, hit[0], "semantic")

    started = time.perf_counter()
    prediction = nlu_selectors.classify(text, language)
    timings["nlu"] = (time.perf_counter() - started) * 1000
    outcome.intent = prediction.intent or ""
    outcome.intent_confidence = prediction.confidence
    intent = nlu_selectors.intent_get(prediction.intent) if prediction.intent else None
    answer_context = (conversation, generation)
    result: knowledge_selectors.SearchResult | None = None
    if intent is not None:
        if intent.handoff_policy == "always":
            return _handoff(outcome, f"intent:{intent.name}", state)
        if intent.slots:
            # A message that names a form's topic may still ask what an article answers: "how
            # do I return an item?" asks for the policy, "cancel my order" or "it says delivered
            # but I never got it" for what the order-status form cannot do. The article answers
            # when it is clearly the better match (`_article_over_intent`); the customer can
            # still start the form after it. Its answer is not put in the semantic cache, which
            # comes before the intents: a request to start the form may come close to it.
            how_to = bool(HOW_TO_RE.search(text)) and not extract_entities(text)
            if how_to or _article_may_beat(prediction.confidence):
                result = _search(kb, query, language, timings)
                if _article_over_intent(result, prediction.confidence, how_to):
                    answered = _answer(
                        outcome, answers, query, result, None, "", answer_context, cacheable
                    )
                    if answered is not None:
                        return answered
            # A question asked aside while a form waits ("how do I start a return?" where the
            # reason is asked) does not start another form over it, which would lose the values
            # given so far: it is searched like any question.
            if not state.get("form"):
                label = _start_label(intent, language)
                if label and (how_to or _asks(text)):
                    if result is None:
                        result = _search(kb, query, language, timings)
                    offering = _form_offer(outcome, result, intent, label)
                    if offering is not None:
                        return offering
                return _form_step(
                    outcome, slot_filling.form_start(intent, text, language, context), state
                )
        response = intent.response_zh if language == "zh" else intent.response_en
        if response:
            outcome.decision = Decision.TEMPLATE
            outcome.replies.append(Reply(response, Decision.TEMPLATE))
            return outcome

    if topic:
        # "How long does that take?" after "how do I get an invoice?": searched together.
        result = _search(kb, _joined(topic, query), language, timings, focus=query)
    elif result is None:
        result = _search(kb, query, language, timings)
    # Neither is the answer to a message that names a form's topic (see above).
    semantic = None if intent is not None and intent.slots else vector
    answered = _answer(
        outcome,
        answers,
        query,
        result,
        semantic,
        embedder,
        answer_context,
        cacheable,
        leaned_on=topic_article if topic else None,
    )
    if answered is not None:
        return answered
    ended = _ended_article(kb, query, language, timings) if not topic else None
    if ended is not None:
        return _ended_reply(outcome, ended, state)

    streak = previous_streak + 1
    state["low_confidence_streak"] = streak
    out_of_scope = prediction.out_of_scope and prediction.method == "classifier"
    if streak >= 2:
        return _handoff(outcome, "low_confidence", state)
    # A fragment ("积分", "membership") gets suggestions, not a person at once.
    if (
        out_of_scope
        and slot_filling.is_substantial(text)
        and result.confidence < out_of_scope_below(language)
    ):
        return _handoff(outcome, "out_of_scope", state)
    suggestions = _suggestions(result)
    _offer(state, suggestions)
    outcome.decision = Decision.FALLBACK
    outcome.replies.append(
        Reply(
            _(
                "I'm not sure I understood. Did you mean one of these? You can also say it "
                "another way, or ask for a person."
            )
            if suggestions
            else _(
                "I'm not sure I understood. Could you say it another way? You can also ask for "
                "a person."
            ),
            Decision.FALLBACK,
            choices=[*(s.title for s in suggestions), _("Talk to a person")],
            confidence=result.confidence,
        )
    )
    return outcome


def _suggestions(result: knowledge_selectors.SearchResult) -> list[knowledge_selectors.Source]:
    """The nearest two articles, to offer when none answers; none below
    SUGGESTION_MIN_CONFIDENCE, where they are noise, not a guess."""
    if result.confidence < SUGGESTION_MIN_CONFIDENCE:
        return []
    return [s for s in result.sources[:2] if s.fused_score > 0]


def _asks(text: str) -> bool:
    """Whether a message asks about something (`ASKS_RE`) without naming an order or another
    value a form would take."""
    return bool(ASKS_RE.search(normalize(text))) and not extract_entities(text)


def _start_label(intent: Any, language: str) -> str:
    """The choice that starts the intent's form ("Start a return"), or "" when staff gave none."""
    label = intent.start_label_zh if language == "zh" else intent.start_label_en
    return str(label or "").strip()


def _form_offer(
    outcome: Outcome, result: knowledge_selectors.SearchResult, intent: Any, label: str
) -> Outcome | None:
    """A question about a form's topic that no article answers confidently ("can I return a
    swimsuit I tried on?"): the nearest two articles are offered, and the choice that starts the
    form. Asking for the order at once would take the question for a request, and the form
    cannot say what the policy is. None when no article is near enough to offer."""
    suggestions = _suggestions(result)
    if not suggestions:
        return None
    _offer(outcome.state, suggestions)
    outcome.state["offered"].append({"intent": intent.name, "title": label})
    outcome.decision = Decision.CLARIFY
    outcome.replies.append(
        Reply(
            _("Do you mean one of these? Or choose “%(start)s” and I will help you with it now.")
            % {"start": label},
            Decision.CLARIFY,
            sources=[source_dict(s) for s in suggestions],
            choices=[*(s.title for s in suggestions), label],
            confidence=result.confidence,
        )
    )
    return outcome


def out_of_scope_below(language: str) -> float:
    """The confidence under which a message out of scope for the intents is handed off at once
    (CHAT["OUT_OF_SCOPE_BELOW_CONFIDENCE"]: a number, or one per language)."""
    setting = settings.CHAT["OUT_OF_SCOPE_BELOW_CONFIDENCE"]
    if isinstance(setting, dict):
        return float(setting[language] if language in setting else setting.get("en", 0.1))
    return float(setting)


def _article_may_beat(intent_confidence: float) -> bool:
    """Whether any article could answer over a form intent this confident (no search else)."""
    return intent_confidence + settings.CHAT["ARTICLE_OVER_INTENT_MARGIN"] <= 1.0


def _article_over_intent(
    result: knowledge_selectors.SearchResult, intent_confidence: float, how_to: bool
) -> bool:
    """Whether the best article answers a message a form intent also claims: a how-to question
    the help centre answers confidently, or an article whose confidence beats the intent's by
    the margin ("cancel my order": the cancellation FAQ at 0.99, the order-status intent at
    0.87, before the demo's classifier learnt that cancelling is no order-status request)."""
    if not result.answerable:
        return False
    floor = settings.CHAT["HOW_TO_ANSWER_CONFIDENCE"]
    if how_to and result.confidence >= floor:
        return True
    margin = settings.CHAT["ARTICLE_OVER_INTENT_MARGIN"]
    return result.confidence >= max(floor, intent_confidence + margin)


def _ended_article(kb: Any, text: str, language: str, timings: dict[str, float]) -> Any:
    """The article a question would have been answered from, had its validity not ended in the
    last ENDED_LOOKBACK ("双十一有什么活动" two weeks after Double 11): searched again, only when
    nothing valid answers, with the articles valid at any time from ENDED_LOOKBACK ago to as
    long ahead. None when no ended article would have been the confident answer; one still to
    come may be ("how much off in the new year sale" is not about the mid-year sale that
    ended), and is not announced. Nor is one the question does not name: "满减怎么算" asks how
    spend-and-save discounts work, and Double 11's "双11满减怎么算" being nearest does not make
    it a question about Double 11 (every sale has them)."""
    now = timezone.now()
    window = (now - ENDED_LOOKBACK, now + ENDED_LOOKBACK)
    result = _search(kb, text, language, timings, window=window, timing="ended_search")
    top = result.top
    if not result.answerable or top is None or top.article is None:
        return None
    until = top.article.valid_until
    if until is None or until > now:
        return None
    named = knowledge_selectors.title_named(kb.pk, result.query, top.article.title, language)
    return top.article if named else None


def _ended_reply(outcome: Outcome, article: Any, state: dict[str, Any]) -> Outcome:
    """Say that what was asked about is over, and when it ended (the last day it ran); its
    text is not quoted, since it no longer holds."""
    last_day = timezone.localtime(article.valid_until - timedelta(microseconds=1))
    outcome.decision = Decision.ANSWER
    state["low_confidence_streak"] = 0
    outcome.replies.append(
        Reply(
            _(
                "“%(title)s” has ended: its last day was %(date)s. Is there anything "
                "else I can help you with?"
            )
            % {"title": article.title, "date": formats.date_format(last_day, "DATE_FORMAT")},
            Decision.ANSWER,
        )
    )
    return outcome


def _joined(topic: str, text: str) -> str:
    """A follow-up searched with the question it leans on, the follow-up kept whole."""
    room = settings.KNOWLEDGE["MAX_QUERY_CHARS"] - len(text) - 1
    return f"{topic[: max(room, 0)]} {text}".strip()


def _search(
    kb: Any,
    text: str,
    language: str,
    timings: dict[str, float],
    *,
    focus: str = "",
    window: tuple[datetime, datetime] | None = None,
    timing: str = "search",
) -> knowledge_selectors.SearchResult:
    started = time.perf_counter()
    # Messages may be longer than a search query; the start says what the question is.
    query = normalize(text)[: settings.KNOWLEDGE["MAX_QUERY_CHARS"]]
    result = knowledge_selectors.search(
        kb, query, language=language, focus=normalize(focus), window=window
    )
    timings[timing] = (time.perf_counter() - started) * 1000
    return result


def _answer(
    outcome: Outcome,
    answers: caches.AnswerCache,
    text: str,
    result: knowledge_selectors.SearchResult,
    vector: Any,
    embedder: str,
    context: tuple[Conversation, Generation],
    cacheable: bool = True,
    leaned_on: int | None = None,
) -> Outcome | None:
    """Answer from the best source (generated by the model pool when one is configured, else
    extractive), or ask which of two equally good ones is meant; None when the result is not
    confident enough to answer. `cacheable` False: the answer is not written to the answer
    caches (a follow-up's, which only fits its conversation). `leaned_on`: for a follow-up, the
    article that answered the question it leans on; still the best source, it is answered from
    even with another close behind: "how long does that take" after "can you ship to the US"
    goes on about international shipping, though its own words come as close to the mainland
    delivery times."""
    top = result.top
    if not result.answerable or top is None:
        return None
    close = [
        s
        for s in result.sources[1:3]
        if top.fused_score - s.fused_score <= settings.CHAT["CLARIFY_MARGIN"]
        and s.title != top.title
    ]
    if (
        close
        and result.confidence < settings.CHAT["CLARIFY_BELOW_CONFIDENCE"]
        and top.article_id != leaned_on
    ):
        options = [top, *close]
        _offer(outcome.state, options)
        outcome.decision = Decision.CLARIFY
        outcome.replies.append(
            Reply(
                _("Which of these do you mean?"),
                Decision.CLARIFY,
                sources=[source_dict(s) for s in options],
                choices=[s.title for s in options],
                confidence=result.confidence,
            )
        )
        return outcome
    answer: dict[str, Any] = {
        "text": extract_answer(top),
        "sources": [source_dict(top)],
        "confidence": result.confidence,
    }
    started = time.perf_counter()
    generated = _generate(context, text, outcome.language, result)
    if generated is not None:
        outcome.timings_ms["generation"] = (time.perf_counter() - started) * 1000
    if generated is not None and generated.ok:
        cited = [result.sources[n - 1] for n in generated.cited] or [top]
        answer = {**answer, "text": generated.text, "sources": [source_dict(s) for s in cited]}
    conversation, generation = context
    withheld = (generated.details.get("moderation") if generated is not None else None) or {}
    # A generated answer came back moderated, sentence by sentence (one bad sentence among good
    # ones is not averaged away); the help centre's own text, which staff wrote, is checked here
    # as a whole, its score kept between answers (the same few texts answer most questions).
    generated_ok = generated is not None and generated.ok
    verdict = (
        Verdict() if generated_ok else moderate(answer["text"], outcome.language, recurring=True)
    )
    if verdict.blocked or withheld:
        # The model's draft (withheld while it streamed) or the answer itself was blocked.
        flagged = verdict if verdict.blocked else _withheld_verdict(withheld)
        _flag(conversation, generation, FlagDirection.OUTPUT, flagged)
    if verdict.blocked:
        return None  # never sent, never cached: the caller says it is not sure
    # A generated answer that speaks of this customer's own details, or an extractive one sent
    # because the pool failed, is not cached: the next asker deserves a fresh answer.
    if cacheable and (generated is None or (generated.ok and not generated.personal)):
        # A generated answer may draw on any source the model read, cited or not.
        made_from = _generation_sources(result) if generated is not None else [top]
        expires_at = answer_expiry(answers.kb_id, made_from)
        if expires_at is not None:
            answer["expires_at"] = expires_at.isoformat()
        answers.exact_set(text, answer)
        if vector is not None:
            answers.semantic_set(embedder, vector, text, answer)
    outcome.decision = Decision.ANSWER
    outcome.replies.append(
        Reply(
            answer["text"],
            Decision.ANSWER,
            answer["sources"],
            confidence=result.confidence,
            generated=generated,
        )
    )
    return outcome


GENERATION_SOURCES = 3


def _generation_sources(
    result: knowledge_selectors.SearchResult,
) -> list[knowledge_selectors.Source]:
    return [s for s in result.sources[:GENERATION_SOURCES] if s.fused_score > 0]


def _generate(
    context: tuple[Conversation, Generation],
    text: str,
    language: str,
    result: knowledge_selectors.SearchResult,
) -> Generated | None:
    """A generated answer from the pool; None when this knowledge base has no generation (no
    chat endpoint configured, or turned off in its prompt)."""
    conversation, generation = context
    pool = inference_selectors.pool()
    if not pool.has_endpoints("chat"):
        return None
    config = inference_selectors.prompt_config_for(conversation.knowledge_base_id)
    if not config.generation_enabled:
        return None
    sources = _generation_sources(result)
    history: list[tuple[str, str]] = []
    if generation.before_seq is not None:
        rows = (
            conversation.messages.filter(
                seq__lt=generation.before_seq,
                role__in=[Role.CUSTOMER, Role.BOT, Role.AGENT],
            )
            .order_by("-seq")
            .values_list("role", "text")[:HISTORY_TURNS]
        )
        history = list(reversed(rows))
    request = GenerationRequest(
        question=text,
        language=language,
        sources=[
            SourceText(number, s.title, extract_answer(s))
            for number, s in enumerate(sources, start=1)
        ],
        config=config,
        history=history,
        summary=conversation.summary,
    )
    factory = generation.stream_factory
    return answer_generate(
        request,
        pool=pool,
        stream=factory() if factory is not None else None,
        cancel=generation.cancel,
    )


def _withheld_verdict(details: dict[str, Any]) -> Verdict:
    return Verdict(
        blocked=True,
        score=details.get("score"),
        source=details.get("source", ""),
        categories=tuple(details.get("categories", ())),
        flagged=True,
    )


def _flag(
    conversation: Conversation, generation: Generation, direction: str, verdict: Verdict
) -> None:
    """A moderation flag for staff on the customer's message being handled (when the engine
    was given it: `before_seq` is its sequence number)."""
    message_id = None
    if generation.before_seq is not None:
        message_id = (
            conversation.messages.filter(seq=generation.before_seq)
            .values_list("pk", flat=True)
            .first()
        )
    moderation_flag_record(
        conversation_id=conversation.pk,
        message_id=message_id,
        direction=direction,
        verdict=verdict,
    )


def _answer_from_cache(outcome: Outcome, answer: dict[str, Any], kind: str) -> Outcome:
    outcome.decision = Decision.ANSWER
    outcome.replies.append(
        Reply(
            answer["text"],
            Decision.ANSWER,
            list(answer.get("sources", [])),
            confidence=answer.get("confidence"),
            cache_hit=kind,
        )
    )
    return outcome
