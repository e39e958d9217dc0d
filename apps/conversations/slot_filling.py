"""Forms: an intent that needs values (an order number, a reason) asks for them one at a time,
checks each, accepts corrections and cancellation, and calls its action when complete.

The open form lives in the conversation's dialogue state:
`{"intent": "return_request", "slots": {"order_number": "LM2026112001"}, "skipped": ["photo"],
"asking": "reason", "attempts": 0}`. The engine calls these inside the message's language
(`translation.override`), so prompts and actions speak it.

An action (or a slot check) may ask for one more value than the intent's slots, by returning a
result whose `data["ask"]` is that slot (the last digits of an order's mobile number, to confirm
the order): the form keeps it under "extra" and asks for it like its own, and
`data["rejected"]` asks for it again, counted as a failed attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from apps.core.text import CJK_RE, LATIN_WORD_RE, normalize
from apps.nlu import actions
from apps.nlu.actions import ActionContext, ActionResult
from apps.nlu.entities import Entity, extract_entities

# A customer who fails to give a valid value this many times in a row is passed to a person.
MAX_ATTEMPTS = 3
# A customer who says this many times that they do not know the order number is passed to one.
MAX_NOT_KNOWN = 2
ENTITY_KINDS = ("order_number", "phone", "email", "amount", "date")
# Kinds of value read from the message without the entity extractor.
READ_KINDS = ("photo", "phone_tail")
# The last digits of a mobile number, on their own ("8001", "尾号 8001", "last four are 8001").
_PHONE_TAIL_RE = re.compile(r"(?<!\d)(\d{4})(?!\d)")

# Cancellations. A cancellation is short: a cancelling phrase ("never mind", "cancel the
# return", "算了吧", "不用了，谢谢", "我不想退了"), perhaps after a filler ("no, …", "嗯，…") and
# with a word of thanks, or ending a sentence that asks nothing ("尺码不对，算了不退了"). A
# question or request that starts the same way ("取消订单怎么退款", "cancel my order") is not
# one: it is the customer's next question. English words end at a word boundary: a return
# reason such as "Stopped working", "Quite small" or "Cancelled my trip" cancels nothing.
_FILLER_EN = r"(?:no|oh|ah|actually|ok|okay|well|sorry|please|just|hmm|um|wait)"
_POLITE_EN = r"(?:please|thanks|thank you|then|now|for now)"
_CANCEL_EN = (
    r"(?:cancel|never ?mind|forget (?:it|about it|that)|stop|quit"
    r"|(?:i(?:'ve| have)? )?changed my mind)"
    r"(?: (?:it|that|this|everything|(?:the|my|this) (?:return|request|form)))?"
)
_PARTICLES_ZH = r"[吧了啦呀啊哈哦呢嘛]*"
_CANCEL_ZH = (
    r"(?:取消(?:这个|它|退货申请|退货|申请|查询|操作|办理)?|算了|不用了|不要了|不办了|退出|停止"
    r"|先不[用要办查退]?了?|我?(?:不想|不要)再?[退查办][货款]?了?|不[退查办]了|我?改主意了)"
)
CANCEL_CLAUSE_RE = re.compile(
    rf"(?:{_FILLER_EN} )*{_CANCEL_EN}(?: {_POLITE_EN})*"
    rf"|(?:那就?|还是|好吧|嗯|哦|唉|哎|我要|我想|请|帮我|这个|这单)?我?"
    rf"(?:{_CANCEL_ZH}{_PARTICLES_ZH})+(?:谢谢你?|谢了|多谢|麻烦了)?{_PARTICLES_ZH}"
)
# Said before or after the cancelling phrase without changing it.
FILLER_CLAUSE_RE = re.compile(
    rf"(?:{_FILLER_EN}|thanks|thank you|thx)(?: {_FILLER_EN}| thanks| thank you)*"
    r"|(?:嗯|哦|好吧|好的|那|啊|哎|唉|谢谢你?|谢了|多谢|麻烦了)+"
)
# Phrases that end what was said before ("算了", "never mind"): a statement may follow in the
# same breath ("算了吧我自己查").
_CLOSING_RE = re.compile(
    rf"^(?:{_FILLER_EN} )*(?:never ?mind|forget (?:it|about it))\b"
    rf"|^(?:算了|不用了|不要了){_PARTICLES_ZH}"
)
# What makes the rest of a message a question or a request of its own.
_ASKS_RE = re.compile(
    r"[?？\d]|^(?:how|what|why|when|where|which|who|can|could|would|do|does|is|are|will)\b"
    r"|\bi(?:'d| would)? (?:want|need|like)\b|怎么|怎样|如何|为什么|什么|哪|吗|能否|可以|多少|多久"
    r"|请问|我[要想]|帮我"
)
# A message that starts like a cancellation (see `form_continue`).
_STARTS_LIKE_CANCEL_RE = re.compile(
    rf"^(?:{_FILLER_EN} )*(?:cancel|never ?mind|forget (?:it|about it))\b"
    r"|^(?:取消(?!了)|算了|不用了|不要了|不办了)"
)
_CLAUSE_SPLIT_RE = re.compile(r"\s*[,.!?;:，。！？；：、~…]+\s*")


def _clause(text: str) -> str:
    """A clause as the patterns read it: lower case, and Chinese without spaces."""
    text = text.strip().lower()
    return re.sub(r"\s+", "", text) if CJK_RE.search(text) else text


def is_cancellation(text: str) -> bool:
    """Whether `text` cancels the open form (see `CANCEL_CLAUSE_RE`)."""
    clauses = [_clause(c) for c in _CLAUSE_SPLIT_RE.split(normalize(text))]
    said = [c for c in clauses if c and not FILLER_CLAUSE_RE.fullmatch(c)]
    if not said:
        return False
    first, last = said[0], said[-1]
    if CANCEL_CLAUSE_RE.fullmatch(first) or CANCEL_CLAUSE_RE.fullmatch(last):
        rest = [c for c in said if not CANCEL_CLAUSE_RE.fullmatch(c)]
    elif match := _CLOSING_RE.match(first):
        rest = [first[match.end() :], *said[1:]]
    else:
        return False
    rest = [c.strip() for c in rest if c.strip()]
    # The question mark went with the split: "never mind, shipping cost?" asks something.
    if rest and re.search(r"[?？]", text):
        return False
    return not any(_ASKS_RE.search(c) for c in rest)


def starts_like_cancellation(text: str) -> bool:
    return bool(_STARTS_LIKE_CANCEL_RE.match(_clause(normalize(text))))


SKIP_RE = re.compile(
    r"^\s*(跳过|没有|没|不用|不需要|无|skip|no|none|nope|no photo|i don'?t have (?:one|it))\b"
    r"|^\s*(跳过|没有|无|不用)\s*$",
    re.IGNORECASE,
)
# A short "no" to an optional slot ("Would you like to add a photo?"): it skips that slot,
# where the same words while a required slot is asked cancel the form.
DECLINE_RE = re.compile(
    r"(?:不用|不需要|不要|没有|没|无|跳过|不加|不用加|不上传)(?:了|啦|吧|的)?(?:谢谢)?"
    r"|(?:no|nope|none|skip|no photo|no thanks?|no thank you|not needed)(?: thanks?| thank you)?",
)
URL_RE = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
QUESTION_RE = re.compile(
    r"[?？]\s*$|^(how|what|why|when|where|can|do|does|is|怎么|如何|为什么|什么|能否|可以)"
)

# A question asked where a free-text value (a return's reason) is expected, and answered
# instead of stored: "how long does a refund take?", "why is my refund late?", "退款多久到账？".
# A question mark alone is no question ("Too small?" is a reason typed by habit); it takes a
# question word that asks (how long, when will, can I, 多久, 怎么, 吗), and a message that also
# says what is wrong with the item is a reason however it is put ("is it ok if the reason is
# that it's too small?", "为什么质量这么差？", "尺码偏小能退吗").
_LEAD_EN = (
    r"^(?:(?:and|but|so|also|ok|okay|well|oh|hi|hello|hey|sorry|actually|btw|by the way"
    r"|quick question|one question|first|wait|um|hmm|please)[\s,:]+)*"
)
_WH_EN = r"(?:how|what|when|where|why|which|who)"
_AUX_EN = r"(?:can|could|may|will|would|should|shall|do|does|did|is|are|am|was|were|has|have)"
# Asks on its own: "how long …", "when will …", "what's …", "can I …", "do you …", "is it
# possible …", "I'd like to know when …".
_ASKS_EN_RE = re.compile(
    rf"{_LEAD_EN}(?:{_WH_EN}(?:['’]s|\s+(?:long|much|many|soon|often|about|{_AUX_EN})(?:n['’]t)?)\b"
    r"|(?:can|could|may|will|would|should|shall|do|does|did|am)(?:n['’]t)?\s+(?:i|you|we)\b"
    r"|is\s+(?:it|there)\s+(?:possible|ok|okay|alright|a\s+way|any)\b"
    r"|(?:i(?:['’]d| would)?\s+(?:like|want|need)\s+to\s+know|(?:can\s+you\s+)?tell\s+me"
    r"|i(?:['’]m| am)\s+wondering|i\s+wonder|any\s+idea|do\s+you\s+know)"
    rf"\s+(?:{_WH_EN}|if|whether)\b)",
    re.IGNORECASE,
)
# Shaped like a question ("is it refundable", "when"): asks only with a question mark after it.
_QUESTION_SHAPE_EN_RE = re.compile(
    rf"{_LEAD_EN}(?:{_WH_EN}\b|{_AUX_EN}(?:n['’]t)?\s+(?:i|you|we|it|they|there|this|that|the|my"
    r"|your|a|an|any)\b)",
    re.IGNORECASE,
)
# Chinese asks with a particle (吗 or 呢 anywhere, 么 ending the clause) or a question word
# (多久, 什么时候, 怎么, 能不能, 可以, 请问); not 不怎么 ("not very"), 没什么 or 不为什么 ("no
# reason"), 还可以 ("it's all right") or 呢子 (woollen cloth).
_ASKS_ZH_RE = re.compile(
    r"吗|呢(?![子绒料])|(?<![什怎这那多])么[啊呀哈]?\W*$"
    r"|多久|多长时间|多少|几天|几个?工作日|什么时候|啥时候?|何时|(?<![不没])(?:为什么|为啥|什么)"
    r"|(?<!不)(?:怎么|怎样|咋)|如何|哪|谁|能不能|能否|是否|可不可以|(?<![还也都就不])可以"
    r"|是不是|有没有|会不会|要不要|需不需要|请问|想问|问一下|问下|想知道"
)
# Says what is wrong with the item (then the message is a reason, whatever else it asks).
_ITEM_PROBLEM_RE = re.compile(
    r"\b(?:broken|broke|breaks|damaged?|defective|faulty|cracked|cracks?|scratch(?:ed|es)?"
    r"|torn|ripped|holes?|stain(?:ed|s)?|dirty|leak(?:s|ing|ed|y)?|dent(?:ed|s)?|faded"
    r"|smell(?:s|y)?|stinks?|fake|counterfeit|expired|mou?ldy|rust(?:y|ed)?|uncomfortable"
    r"|itchy|ugly|flimsy|noisy|small|big|large|tight|loose|(?<!takes )(?<!taking )(?<!took )"
    r"(?<!take )(?<!been )too\s+(?:short|long|narrow|wide|heavy|thin|thick|loud|dark|bright)"
    r"|(?:doesn['’]t|does\s+not|didn['’]t|did\s+not|won['’]t|will\s+not|can['’]t|cannot"
    r"|isn['’]t|is\s+not|wasn['’]t|was\s+not)\s+(?:\w+\s+)?(?:fit|work(?:s|ing)?|match"
    r"|charge|turn\s+on|switch\s+on|start|close|zip|look\s+like|as\s+described)"
    r"|stopped\s+working|not\s+working|no\s+longer\s+works"
    r"|wrong\s+(?:item|size|colou?r|product|model|one|thing|style|pair|version|shade)"
    r"|sent\s+(?:me\s+)?the\s+wrong|ordered\s+the\s+wrong|by\s+mistake|mistakenly"
    r"|not\s+as\s+(?:described|pictured|shown|advertised|expected)"
    r"|not\s+what\s+i\s+(?:ordered|expected|wanted)|different\s+(?:from|than|to)|nothing\s+like"
    r"|looks?\s+different|quality|cheaply\s+made"
    r"|missing\s+(?:parts?|pieces?|items?|buttons?|accessor(?:y|ies)|screws?|cables?|chargers?)"
    r"|(?:parts?|pieces?|something|one)\s+(?:is\s+|was\s+|are\s+|were\s+)?missing"
    r"|(?:don['’]t|didn['’]t|do\s+not|did\s+not)\s+(?:really\s+)?(?:like|love|want|need)"
    r"\s+(?:it|them|this|that|the)|dislike|changed\s+my\s+mind|no\s+longer\s+(?:need|want)"
    r"|disappointed|(?:not\s+|un)happy\s+with)\b"
    r"|坏|破|碎|裂|烂|损|瑕疵|划痕|划伤|污渍|脏|旧|漏[水气电油液了]|断[了掉裂开]|掉色|掉漆|褪色"
    r"|色差|起球|开线|脱线|变形|生锈|发霉|异味|臭|质量|做工|材质|面料"
    r"|[太偏有点些这么很好]+[大小紧松薄厚重硬软]|[太偏有点些]+[长短]|[大小紧松]了|不合[适身脚]"
    r"|穿不[上下进]|尺[码寸]不|码数不|不符|(?:和|跟|与)描述|货不对板|不对版|发错|错发|少发|漏发"
    r"|缺(?!货)|少了|假货|假的|过期|不喜欢|不想要|不满意|不好用|不好看|不舒服|不能用|用不了"
    r"|没法用|不能穿|不亮|没反应|开不了机|充不[进上]电|不工作|故障|失灵|(?<!我)有[点些]?问题"
    r"|出了?问题|毛病|颜色不对|买错|拍错|多拍|重复(?:购买|下单)",
    re.IGNORECASE,
)
_QUESTION_CLAUSE_RE = re.compile(r"[^,.!?;:，。！？；：、~…]+[,.!?;:，。！？；：、~…]*")


def _asks_en(clause: str) -> bool:
    return bool(
        _ASKS_EN_RE.match(clause)
        or (re.search(r"[?？]\s*$", clause) and _QUESTION_SHAPE_EN_RE.match(clause))
    )


def _asks(text: str) -> bool:
    """Whether some clause of `text` asks something (see `_ASKS_EN_RE`, `_ASKS_ZH_RE`). A clause
    that mixes the languages asks in either: "refund 多久到账", "how long 退款", "我的 order
    什么时候到"."""
    for match in _QUESTION_CLAUSE_RE.finditer(normalize(text)):
        raw = match.group(0).strip().lower()
        if not CJK_RE.search(raw):
            if _asks_en(raw):
                return True
            continue
        if _ASKS_ZH_RE.search(_clause(raw)):
            return True
        # The English words between the Chinese ones, each run read as a clause of its own,
        # with the clause's question mark.
        mark = "?" if re.search(r"[?？]\s*$", raw) else ""
        for run in re.split(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", raw):
            run = run.strip(" ,.!?;:，。！？；：、~…")
            if LATIN_WORD_RE.search(run) and _asks_en(run + mark):
                return True
    return False


def is_question_aside(text: str) -> bool:
    """Whether `text`, typed where a free-text value is asked for, is plainly a question of its
    own rather than the value (see `_asks`): each clause is read on its own, so "ok, and how
    long does the refund take?" asks; a message that says what is wrong with the item is the
    value however it is put."""
    return not _ITEM_PROBLEM_RE.search(normalize(text)) and _asks(text)


# "I don't know the order number" where it is asked for (each clause said must be one of these,
# perhaps among fillers): the customer is told where to find it, not that it is invalid.
_ORDER_REF_EN = (
    r"(?:(?:the|my|an?|this|that)\s+)?(?:order\s*(?:number|num|no\.?|id|#)|number|one|it)"
)
_NOT_KNOWN_EN_RE = re.compile(
    r"(?:(?:sorry|um|uh|hmm|oh|well|but|honestly|actually|no|ok|okay)\s+)*"
    r"(?:(?:i\s+)?(?:really\s+|just\s+)?(?:don['’]?t|do\s+not|didn['’]?t|did\s+not)\s+"
    r"(?:know|remember|recall|have|keep|get|see)"
    r"|(?:i\s+)?(?:can['’]?t|cannot|couldn['’]?t|could\s+not)\s+(?:find|remember|recall|locate|see)"
    r"|(?:i\s+)?(?:forgot|lost|have\s+no\s+idea\s+(?:of|about|what))"
    r"|(?:i\s+)?(?:have\s+)?no\s+idea|(?:i(?:['’]m|\s+am)\s+)?not\s+sure|dunno|idk)"
    rf"(?:\s+(?:what|which)(?:\s+{_ORDER_REF_EN})?(?:\s+(?:is|it\s+is|was))?"
    rf"|\s+{_ORDER_REF_EN})?(?:\s+(?:sorry|either|unfortunately|anymore|now))*"
    rf"|(?:so\s+|and\s+|but\s+)?(?:where|how)\s+(?:do|can|could|would|should|will)\s+i"
    r"\s+(?:find|get|see|look\s+(?:up|for)|check|locate)"
    rf"(?:\s+{_ORDER_REF_EN})?(?:\s+(?:then|now))?"
    rf"|(?:so\s+|and\s+|but\s+)?(?:where|what)(?:['’]s|\s+is)\s+{_ORDER_REF_EN}",
    re.IGNORECASE,
)
_ORDER_REF_ZH = r"(?:我的|那个|这个|订单的)?(?:订单号码?|订单编号|单号|订单|号码|编号|它)?"
_NOT_KNOWN_ZH_RE = re.compile(
    r"(?:嗯|啊|呃|额|哦|唉|哎|可是|但是|不过)*我?(?:也|真的?|确实|实在|完全)?"
    r"(?:不知道|不晓得|不清楚|不记得|记不[得清住]|忘了|忘记了?|找不到|查不到|没有|没)"
    rf"{_ORDER_REF_ZH}(?:是多少|是什么|在哪[里儿]?)?(?:了|啊|呀|诶|欸|耶|呢|哦)*"
    rf"|{_ORDER_REF_ZH}(?:要|应该|该|能|可以)?(?:在哪[里儿]?|哪里|去哪[里儿]?|怎么|如何|从哪[里儿]?)"
    rf"(?:能|可以|才能|去)?(?:看|找|查)(?:到|看|得到)?{_ORDER_REF_ZH}(?:呢|啊|呀|哦)*"
    rf"|我?的?(?:订单号码?|单号|订单编号)(?:是)?(?:多少|什么|在哪[里儿]?)(?:来着)?(?:呢|啊|呀)*",
)


# Where the last digits of an order's mobile number are asked for: the customer cannot give them
# (not their number, forgotten, changed) or asks why they are needed.
_CANNOT_CONFIRM_RE = re.compile(
    r"\b(?:don['’]?t|do\s+not|didn['’]?t|can['’]?t|cannot|couldn['’]?t)\s+"
    r"(?:know|remember|recall|have|access|find)\b"
    r"|\bno\s+idea\b|\bnot\s+(?:my|mine)\b|\bforg[eo]t\b"
    r"|\b(?:changed|lost|new|old)\s+(?:my\s+)?(?:phone|number|mobile)\b"
    r"|\b(?:wife|husband|partner|mom|mum|dad|mother|father|friend|son|daughter|colleague|"
    r"someone\s+else)\b"
    r"|不知道|不晓得|不清楚|不记得|记不[得清住]|忘了|忘记|换号|换了号|换手机号|停机|不是我的"
    r"|别人|家人|老婆|老公|妻子|丈夫|朋友|爸|妈|同事|帮我下的",
    re.IGNORECASE,
)
_WHY_RE = re.compile(
    r"\bwhy\b|\bwhat\s+for\b|为什么|为啥|干嘛|干什么用|凭什么|有什么用", re.IGNORECASE
)


def _contact_unconfirmed(
    asking: dict[str, Any], form: dict[str, Any], text: str, language: str, entities: list[Any]
) -> FormStep | None:
    """A message with no digits where an order's mobile digits are asked for: why they are
    needed, explained and asked for again (no attempt counted); not known, a person to confirm
    the order another way; None for anything else."""
    cleaned = normalize(text)
    if _WHY_RE.search(cleaned):
        why = _(
            "Order details such as the item and the tracking number are shown only to someone "
            "who knows the mobile number the order is delivered to."
        )
        return FormStep([why, _prompt(asking, language)], form, entities=entities)
    if _CANNOT_CONFIRM_RE.search(cleaned):
        return FormStep(
            [_("No problem: a colleague can confirm the order with you another way.")],
            None,
            entities=entities,
            handoff_reason="order_unconfirmed",
        )
    return None


def is_order_number_unknown(text: str) -> bool:
    """Whether `text`, typed where the order number is asked for, says the customer does not
    know it or asks where to find it ("I don't know the order number", "where do I find it",
    "我不知道订单号", "忘了订单号", "订单号在哪看")."""
    clauses = [_clause(c) for c in _CLAUSE_SPLIT_RE.split(normalize(text))]
    said = [c for c in clauses if c and not FILLER_CLAUSE_RE.fullmatch(c)]
    if not said:
        return False
    unknown = [c for c in said if _NOT_KNOWN_EN_RE.fullmatch(c) or _NOT_KNOWN_ZH_RE.fullmatch(c)]
    # What else is said asks nothing: "不知道订单号，退款多久到账？" is a question.
    rest = [c for c in said if c not in unknown]
    return bool(unknown) and not any(_asks(c) for c in rest)


# A reason stated in the message that opens a form ("I want to return order LM2026112002
# because the zipper is broken", "我要退货，拉链坏了"): what follows "because", "since", "as" or
# "因为", or else the clauses that say what is wrong with the item. A message with only an
# order number or a request states none.
_BECAUSE_RE = re.compile(
    r"\b(?:because(?:\s+of)?|cause|cos|coz|(?:since|as)(?=\s+(?:it|its|it['’]s|they|they['’]re"
    r"|the|my|this|that|these|those|i|i['’]ve|i['’]m|there|one|both)\b))\s+"
    r"|因为|由于|原因是|理由是|原因[:：]",
    re.IGNORECASE,
)
_REASON_ZH_RE = re.compile(r"尺码|尺寸|码数|不合适|坏了|破了")
_CONDITIONAL_RE = re.compile(r"\b(?:if|in case|whether)\b|如果|要是|假如|万一")
# Free-text slots a stated reason fills.
_REASON_SLOTS = frozenset(["reason"])


def stated_reason(text: str, entities: list[Entity]) -> str | None:
    """The reason `text` gives, without the order number it may also give; None when it gives
    none (see `_BECAUSE_RE`)."""
    cleaned = normalize(text)
    numbers = [normalize(e.text) for e in entities if e.kind == "order_number"]
    strip = " ,.!?;:，。！？；：、~…-"
    if match := _BECAUSE_RE.search(cleaned):
        reason = cleaned[match.end() :]
        for number in numbers:
            reason = reason.replace(number, " ")
        reason = re.sub(r"\s+", " ", reason).strip(strip)
        return reason if len(reason) >= 2 else None
    # An order number ends a clause: "我要退货 LM2026112002 尺码太小了" says "尺码太小了".
    for number in numbers:
        cleaned = cleaned.replace(number, ",")
    clauses = [c.strip(strip) for c in _CLAUSE_SPLIT_RE.split(cleaned)]
    said = [
        c
        for c in clauses
        if c
        and (_ITEM_PROBLEM_RE.search(c) or _REASON_ZH_RE.search(c))
        and not _CONDITIONAL_RE.search(c.lower())
    ]
    if not said:
        return None
    joiner = "，" if CJK_RE.search(cleaned) else ", "
    return joiner.join(said)


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
    # The message is a question asked while the form waits for a value (`is_question_aside`):
    # the caller answers it as a new message, keeps the form (`state`) and then sends `replies`,
    # the value's prompt again.
    aside: bool = False


def entity_dicts(entities: list[Entity]) -> list[dict[str, Any]]:
    return [
        {"kind": e.kind, "value": e.value, "text": e.text, "start": e.start, "end": e.end}
        for e in entities
    ]


# Checks a form runs on the values it has so far, before it asks for the next one, by the name of
# the intent's action (`slot_check`).
SlotCheck = Callable[[dict[str, Any], ActionContext], ActionResult | None]
_slot_checks: dict[str, SlotCheck] = {}


def slot_check(action: str) -> Callable[[SlotCheck], SlotCheck]:
    """Decorator: `@slot_check("return_request_create")` registers a check of the values given
    so far to the form of every intent whose action is that one. It runs each time the form is
    about to ask for another value and returns None to go on, or what to tell the customer
    instead: the form then ends there as if the action had answered (an order that cannot be
    returned is refused before the reason is asked for), except that a result with
    `data["found"] is False` asks for the order number again. The action itself still applies
    its rules when it runs; the check only tells the customer sooner."""

    def decorate(function: SlotCheck) -> SlotCheck:
        _slot_checks[action] = function
        return function

    return decorate


def _slot_label(slot: dict[str, Any]) -> str:
    labels = {
        "order_number": _("order number"),
        "phone": _("mobile number"),
        "email": _("e-mail address"),
        "amount": _("amount"),
        "date": _("date"),
        "photo": _("photo"),
        "phone_tail": _("last 4 digits of the mobile number on the order"),
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
    if slot.get("entity") == "phone_tail":
        return _("Please send just the last 4 digits of the mobile number, for example 1234.")
    return _("Sorry, I couldn't read a %(slot)s in that.") % {"slot": _slot_label(slot)}


def _is_free_text(slot: dict[str, Any]) -> bool:
    return slot.get("entity", "text") not in (*ENTITY_KINDS, *READ_KINDS)


def _form_slots(intent: Any, form: dict[str, Any]) -> list[dict[str, Any]]:
    """The intent's slots and those its action asked for besides (`data["ask"]`)."""
    return [*intent.slots, *form.get("extra", [])]


def _value_for(
    slot: dict[str, Any], text: str, entities: list[Entity], *, asked: bool
) -> Any | None:
    """The slot's value found in `text`, or None. Free-text slots take the whole message, but
    only when that slot was the one asked for (`form_continue`, which has already taken a
    cancellation out)."""
    kind = slot.get("entity", "text")
    if kind in ENTITY_KINDS:
        for entity in entities:
            if entity.kind == kind:
                return entity.value
        if kind == "order_number" and asked:
            # Only the digits, where the order number is asked for ("2026112001"): the lookup
            # finds the order without its letters.
            digits = re.sub(r"[\s#-]+", "", normalize(text))
            if re.fullmatch(r"\d{8,14}", digits):
                return digits
        return None
    if kind == "photo":
        match = URL_RE.search(text)
        return match.group(0) if match else None
    if kind == "phone_tail":
        # A whole mobile number gives its last digits; alone, one group of four digits, only
        # where they were asked for.
        for entity in entities:
            if entity.kind == "phone":
                return re.sub(r"\D", "", str(entity.value))[-4:]
        groups = _PHONE_TAIL_RE.findall(normalize(text)) if asked else []
        return groups[0] if len(groups) == 1 and not re.search(r"\d{5,}", text) else None
    if not asked:
        return None
    cleaned = normalize(text)
    return cleaned if len(cleaned) >= 2 else None


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
    """Ask for the next missing slot (when the values so far pass the action's `slot_check`),
    or run the action when none is missing."""
    slot = _next_slot(intent.slots, form)
    if slot is not None:
        check = _slot_checks.get(intent.action or "")
        result = check(dict(form["slots"]), context) if check is not None else None
        if result is None:
            form["asking"] = slot["name"]
            return FormStep([*replies, _prompt(slot, language)], form, entities=entities)
        return _acted(result, form, replies, entities)
    function = actions.get(intent.action) if intent.action else None
    if function is None:
        values = ", ".join(f"{k}: {v}" for k, v in form["slots"].items())
        text = _("Thank you, I have noted: %(values)s. A colleague will follow up.") % {
            "values": values
        }
        return FormStep([*replies, text], None, decision="action", entities=entities)
    return _acted(function.function(dict(form["slots"]), context), form, replies, entities)


def _acted(
    result: ActionResult,
    form: dict[str, Any],
    replies: list[str],
    entities: list[dict[str, Any]],
) -> FormStep:
    """The form after its action (or its check) answered: closed, asking for a value the action
    wants besides (`data["ask"]`, again when `data["rejected"]`), or asking for the order
    number again when that number was not found."""
    ask = result.data.get("ask")
    if ask and ask["name"] not in {slot["name"] for slot in form.get("extra", [])}:
        form.setdefault("extra", []).append(ask)
    again = None  # the slot asked for again, counted as a failed attempt
    if ask:
        form["asking"] = ask["name"]
        if not result.data.get("rejected"):
            return FormStep([*replies, result.text], form, entities=entities, action_result=result)
        again = ask["name"]
    elif result.data.get("found") is False and "order_number" in form["slots"]:
        # A number that is well-formed but unknown: ask for it again rather than give up.
        _extras_cleared(form)
        again = "order_number"
    if again is None:
        return FormStep(
            [*replies, result.text],
            None,
            decision="action",
            entities=entities,
            action_result=result,
            handoff_reason=result.handoff_reason,
        )
    form["slots"].pop(again, None)
    form["asking"] = again
    form["attempts"] = form.get("attempts", 0) + 1
    if form["attempts"] < MAX_ATTEMPTS:
        return FormStep([*replies, result.text], form, entities=entities, action_result=result)
    text, handoff_reason = result.text, "form_failed"
    if ask:
        # Wrong digits for an order's mobile number: the order could not be confirmed, which
        # the person taking over needs to know more than that a form failed.
        text = _("Sorry, I couldn't confirm that.")
        if ask.get("entity") == "phone_tail":
            handoff_reason = "order_unconfirmed"
    return FormStep(
        [*replies, text],
        None,
        decision="action",
        entities=entities,
        action_result=result,
        handoff_reason=handoff_reason,
    )


def _extras_cleared(form: dict[str, Any]) -> None:
    """The values the action asked for besides, dropped when a value they were given for
    changes (the mobile digits given for one order confirm nothing about another)."""
    for extra in form.get("extra", []):
        form["slots"].pop(extra["name"], None)


def _order_number_unknown(
    asking: dict[str, Any], form: dict[str, Any], language: str, entities: list[dict[str, Any]]
) -> FormStep:
    """The customer does not know the order number: where to find it, and the number asked for
    again; the second time, a person (who can find the order from the account) takes over."""
    form["not_known"] = form.get("not_known", 0) + 1
    if form["not_known"] >= MAX_NOT_KNOWN:
        return FormStep(
            [_("No problem: a colleague can look the order up from your account.")],
            None,
            entities=entities,
            handoff_reason="form_failed",
        )
    where = _(
        "You can find the order number in the order confirmation e-mail, or under My Orders in "
        "your account. It starts with LM, for example LM2026112001."
    )
    return FormStep([where, _prompt(asking, language)], form, entities=entities)


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
    _fill_stated_reason(intent, form, text, found)
    return _advance(intent, form, language, context, [], entity_dicts(found))


def _fill_stated_reason(intent: Any, form: dict[str, Any], text: str, found: list[Entity]) -> None:
    """The reason slots still empty, filled with the reason `text` states, if it states one
    ("我要退货，拉链坏了"; "LM2026112002, the zipper is broken" where the number is asked)."""
    for slot in intent.slots:
        name = slot["name"]
        if name in _REASON_SLOTS and _is_free_text(slot) and name not in form["slots"]:
            reason = stated_reason(text, found)
            if reason is not None:
                form["slots"][name] = reason


def asked_slot(intent: Any, form: dict[str, Any]) -> dict[str, Any] | None:
    """The slot the open form is asking for, if any."""
    return next((s for s in _form_slots(intent, form) if s["name"] == form.get("asking")), None)


def asks_free_text(intent: Any, form: dict[str, Any]) -> bool:
    """Whether the open form waits for a free-text value (a return's reason)."""
    asked = asked_slot(intent, form)
    return asked is not None and _is_free_text(asked)


def form_aside(intent: Any, form: dict[str, Any], language: str) -> FormStep | None:
    """The open form kept while a message that is not about it (one of the suggestions the
    last reply offered) is answered, and its value asked for again; None when it asks for no
    value."""
    asked = asked_slot(intent, form)
    if asked is None:
        return None
    return FormStep([_prompt(asked, language)], form, aside=True)


def form_continue(
    intent: Any, form: dict[str, Any], text: str, language: str, context: ActionContext
) -> FormStep | None:
    """One customer message while a form is open. None: the message is not about the form
    (a question of its own); the caller closes the form and handles it as a new message."""
    asked = asked_slot(intent, form)
    if (
        asked is not None
        and not asked.get("required", True)
        and DECLINE_RE.fullmatch(_clause(_CLAUSE_SPLIT_RE.sub(" ", normalize(text))).strip())
    ):
        form["skipped"].append(asked["name"])
        return _advance(intent, form, language, context, [], [])
    if is_cancellation(text):
        return FormStep([_("OK, I've cancelled that.")], None, cancelled=True)
    found = extract_entities(text, language=language)
    if not found and starts_like_cancellation(text):
        # "取消订单怎么退款", "cancel my order": not a cancellation of the form but a question
        # or request of its own, which the caller answers as a new message.
        return None
    entities = entity_dicts(found)
    slots_by_name = {slot["name"]: slot for slot in _form_slots(intent, form)}
    asking = slots_by_name.get(form.get("asking") or "")
    replies: list[str] = []
    # Corrections: a value for a slot already filled ("不对，订单号是 …").
    for slot in intent.slots:
        if slot["name"] == form.get("asking") or slot["name"] not in form["slots"]:
            continue
        value = _value_for(slot, text, found, asked=False)
        if value is not None and value != form["slots"][slot["name"]]:
            form["slots"][slot["name"]] = value
            _extras_cleared(form)
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
        if value is not None and _is_free_text(asking) and is_question_aside(text):
            # Not the reason but a question about something else ("how long does a refund
            # take?"): answered, and the reason asked for again, with nothing counted as a
            # failed attempt.
            return FormStep([_prompt(asking, language)], form, entities=entities, aside=True)
        if value is not None:
            form["slots"][asking["name"]] = value
            if not _is_free_text(asking):
                # "LM2026112002, the zipper is broken": the reason comes with the number.
                _fill_stated_reason(intent, form, text, found)
            return _advance(intent, form, language, context, replies, entities)
        if replies:  # a correction only; checked, then what is missing asked for again
            return _advance(intent, form, language, context, replies, entities)
        if asking.get("entity") == "phone_tail":
            step = _contact_unconfirmed(asking, form, text, language, entities)
            if step is not None:
                return step
        if asking.get("entity") == "order_number" and is_order_number_unknown(text):
            return _order_number_unknown(asking, form, language, entities)
        if not found and (
            QUESTION_RE.search(normalize(text).lower())
            or (asking.get("entity") != "text" and is_substantial(text))
        ):
            return None  # a question or request of its own: the customer moved on
        if not _is_free_text(asking) and _asks(text):
            # A short question asked while a value is awaited, perhaps in both languages
            # ("refund 多久到账", "how long 退款"): answered, the form kept and the value asked
            # for again, with nothing counted as a failed attempt.
            return FormStep([_prompt(asking, language)], form, entities=entities, aside=True)
        form["attempts"] = form.get("attempts", 0) + 1
        if form["attempts"] >= MAX_ATTEMPTS:
            return FormStep(
                # The hand-off notice that follows says a person takes over.
                [_("Sorry, I'm having trouble with this.")],
                None,
                entities=entities,
                handoff_reason="form_failed",
            )
        return FormStep([_invalid(asking), _prompt(asking, language)], form, entities=entities)
    return _advance(intent, form, language, context, replies, entities)
