"""How angry a customer's message reads, in Chinese and English, to decide when to hand a
conversation to a person.

Lexicon- and cue-based so every decision can be traced to a phrase: a score is not a moderation
verdict, and mild dissatisfaction ("有点慢", "a bit slow") must stay below the handoff threshold.

Each lexicon phrase has a weight: roughly, how likely a message containing it is angry on its
own. Weights combine like independent pieces of evidence (1 - Π(1 - w)), so two moderate cues
make a strong one and no number of cues goes past 1. A phrase right after an intensifier
("太", "so") counts more, right after a softener ("有点", "a bit") counts half, and right after
a negation ("不", "not") does not count ("not bad", "不是骗子吧"). Punctuation (!!!, ???) and
English words in capitals add evidence of their own, but too little to reach the threshold
without a phrase: "Thanks!!!" is not angry.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_THRESHOLD = 0.6

# Phrases are matched in a lower-cased, NFKC-folded copy of the message. A phrase is a plain
# string, or a regular expression where a plain string would also match innocent words (those
# say so in a comment).
CHINESE_ANGER = {
    # insults and abuse aimed at the service
    r"垃圾(?!袋|桶|分类|处理|清理|箱|车|站|短信|邮件)": 0.7,  # not the rubbish bag
    "骗子": 0.75,
    "骗人": 0.65,
    "骗钱": 0.75,
    "诈骗": 0.7,
    r"(?<![翻打摇])滚(?![动筒轮烫珠床梯雪])": 0.7,  # 滚开, not 滚动/滚筒/摇滚
    "傻逼": 0.9,
    "傻b": 0.9,
    "煞笔": 0.9,
    r"(?<![a-z])sb(?![a-z])": 0.6,  # not inside "usb"
    r"(?<!妈)妈的": 0.8,  # not 妈妈的 (a gift for my mum)
    "他妈": 0.8,
    r"(?<![a-z])tmd(?![a-z])": 0.8,
    "特么": 0.7,
    "尼玛": 0.8,
    "草泥马": 0.9,
    r"(?<![a-z])cnm(?![a-z])": 0.85,
    "卧槽": 0.5,
    "去死": 0.85,
    "混蛋": 0.8,
    "王八蛋": 0.85,
    "狗屎": 0.8,
    "废物": 0.7,
    "脑残": 0.8,
    "白痴": 0.75,
    "智障": 0.8,
    "无耻": 0.75,
    "不要脸": 0.8,
    "黑心": 0.7,
    "黑店": 0.75,
    "奸商": 0.75,
    "流氓": 0.7,
    "坑人": 0.65,
    "坑爹": 0.65,
    "坑钱": 0.7,
    "什么破": 0.65,
    "破玩意": 0.7,
    "什么玩意": 0.6,
    "恶心": 0.6,
    "有病": 0.6,
    "耍我": 0.7,
    "忽悠": 0.6,
    "糊弄": 0.55,
    # the customer says how they feel
    "气死": 0.8,
    "气炸": 0.85,
    "火大": 0.7,
    "愤怒": 0.75,
    "生气": 0.55,
    "恼火": 0.6,
    "受够了": 0.8,
    "忍无可忍": 0.85,
    "欺人太甚": 0.85,
    "太过分": 0.75,
    "过分": 0.45,
    "太离谱": 0.6,
    "离谱": 0.45,
    "烦死了": 0.6,
    # threats of escalation
    "投诉你们": 0.75,
    "我要投诉": 0.7,
    "投诉": 0.4,
    r"(?<![0-9])12315(?![0-9])": 0.8,  # the consumer-rights hotline, not inside an order number
    "消协": 0.7,
    "曝光你们": 0.8,
    "起诉": 0.65,
    "报警": 0.6,
    "差评": 0.45,
    # demands and exasperation
    "退钱": 0.35,  # "我想退钱" is an ordinary request; shouted, it is a demand
    r"退钱\s*!": 0.65,
    "给我退钱": 0.5,
    r"给我退钱\s*!": 0.7,
    "还我钱": 0.6,
    "说了多少遍": 0.55,
    "多少次了": 0.45,
    "没人管": 0.5,
    "搞什么": 0.55,
    "敷衍": 0.5,
    "太差": 0.5,
    "最差": 0.55,
    # mild dissatisfaction: evidence, but never enough alone
    "失望": 0.35,
    "不满意": 0.35,
    "无语": 0.35,
    "郁闷": 0.25,
    "慢": 0.15,
    r"差(?!不多|价|额|异|距|点)": 0.2,  # not 差不多 "about", 差价 "price difference"
}

ENGLISH_ANGER = {
    # insults and abuse aimed at the service
    r"scam(?:mers?|s)?\b": 0.75,
    "fraud": 0.7,
    "thieves": 0.8,
    "liars": 0.75,
    r"rip[- ]?off": 0.7,
    r"\bidiots?\b": 0.75,
    "incompetent": 0.7,
    r"\bstupid\b": 0.55,
    "useless": 0.6,
    "pathetic": 0.65,
    "disgusting": 0.65,
    "ridiculous": 0.6,
    "unacceptable": 0.6,
    "worst": 0.6,
    "terrible service": 0.7,
    "terrible": 0.45,
    "horrible": 0.5,
    "awful": 0.45,
    "a joke": 0.5,
    r"\bf+u+c+k+\w*": 0.85,
    r"\bwtf\b": 0.7,
    "what the hell": 0.65,
    "bullshit": 0.8,
    r"\bshit\w*": 0.65,
    r"\bcrap\b": 0.55,
    r"\bdamn\b": 0.45,
    # the customer says how they feel
    "furious": 0.85,
    "livid": 0.85,
    "outraged": 0.8,
    "pissed": 0.75,
    r"\bangry\b": 0.6,
    "fed up": 0.75,
    "sick and tired": 0.8,
    "sick of": 0.6,
    "had enough": 0.65,
    "frustrated": 0.5,
    "frustrating": 0.45,
    "annoyed": 0.4,
    "annoying": 0.35,
    # threats of escalation
    r"\bsue\b": 0.65,
    "lawyer": 0.55,
    "file a complaint": 0.55,
    "want to complain": 0.55,
    "report you": 0.65,
    "never again": 0.5,
    # demands and exasperation
    "give me my money back": 0.55,
    "how many times": 0.45,
    # mild dissatisfaction: evidence, but never enough alone
    "disappointed": 0.35,
    "not happy": 0.35,
    "not satisfied": 0.35,
    r"\bbad\b": 0.25,
    r"\bslow\b": 0.15,
}

# Right before a phrase, these make it count more (weight * INTENSIFY, at most 0.95) or half.
CHINESE_INTENSIFIERS = (
    "太",
    "非常",
    "特别",
    "真的",
    "真",
    "超级",
    "极其",
    "简直",
    "完全",
    "根本",
    "好",
)
ENGLISH_INTENSIFIERS = ("so", "very", "really", "extremely", "totally", "absolutely", "such a")
CHINESE_SOFTENERS = ("有点", "有一点", "有些", "稍微", "一点")
ENGLISH_SOFTENERS = ("a bit", "a little", "slightly", "somewhat", "kind of", "kinda")
CHINESE_NEGATIONS = ("不", "没", "并非")  # 别 is left out: "别骗人了" is angry
ENGLISH_NEGATIONS = ("not", "never", "no", "hardly", "n't")  # n't: any word ending so
INTENSIFY = 1.25
SOFTEN = 0.5
# How far before a phrase a modifier still applies, within its clause: characters in Chinese
# (a negation only in the last two: "不是骗子" but not "我不管，退钱"), words in English.
CHINESE_REACH = 3
CHINESE_NEGATION_REACH = 2
ENGLISH_REACH = 3
CLAUSE_END_RE = re.compile(r"[,.;:!?，。；：！？、\n]")
# "是不是", "有没有": a question, not a negation ("你们是不是有病").
A_NOT_A_RE = re.compile(r"(.)[不没]\1")

EXCLAMATION_RE = re.compile(r"[!?]{2,}")
CAPITALS_RE = re.compile(r"\b[A-Z]{3,}\b")
# Capitalised words that are names, not shouting.
ACRONYMS = frozenset(
    [
        "USD",
        "RMB",
        "CNY",
        "FAQ",
        "SMS",
        "APP",
        "VIP",
        "PDF",
        "URL",
        "API",
        "USB",
        "GPS",
        "SIM",
        "PIN",
        "OTP",
        "SKU",
        "VAT",
        "EMS",
        "DHL",
        "UPS",
        "ETA",
    ]
)


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern[str]
    weight: float
    chinese: bool


def _compile(lexicon: dict[str, float], chinese: bool) -> list[_Cue]:
    return [_Cue(re.compile(phrase), weight, chinese) for phrase, weight in lexicon.items()]


_CUES = _compile(CHINESE_ANGER, chinese=True) + _compile(ENGLISH_ANGER, chinese=False)


def anger_score(text: str) -> float:
    """How angry `text` reads, from 0 (calm) to 1; DEFAULT_THRESHOLD (0.6) and up is angry."""
    folded = unicodedata.normalize("NFKC", text)
    lowered = folded.lower()
    calm = 1.0  # Π(1 - w) over the evidence
    for weight in _phrase_weights(lowered):
        calm *= 1 - weight
    calm *= 1 - _punctuation_weight(folded)
    calm *= 1 - _capitals_weight(folded)
    return round(1 - calm, 4)


def is_angry(text: str, threshold: float = DEFAULT_THRESHOLD) -> bool:
    return anger_score(text) >= threshold


def _phrase_weights(lowered: str) -> list[float]:
    """The weight of each phrase found, modifiers applied; a longer phrase hides the shorter
    ones inside it ("我要投诉" counts once, not also as "投诉")."""
    matches = [
        (m.start(), m.end(), cue)
        for cue in _CUES
        for m in cue.pattern.finditer(lowered)
        if m.end() > m.start()
    ]
    matches.sort(key=lambda item: (item[0] - item[1], item[0]))
    taken: list[tuple[int, int]] = []
    weights = []
    for start, end, cue in matches:
        if any(start < t_end and end > t_start for t_start, t_end in taken):
            continue
        taken.append((start, end))
        weight = _modified(cue, lowered[:start])
        if weight > 0:
            weights.append(weight)
    return weights


def _modified(cue: _Cue, before: str) -> float:
    """The cue's weight after the negation, softener or intensifier just before it, if any."""
    clause = CLAUSE_END_RE.split(before)[-1]
    if cue.chinese:
        clause = A_NOT_A_RE.sub("", clause)
        window = clause[-CHINESE_REACH:]
        negated = any(n in clause[-CHINESE_NEGATION_REACH:] for n in CHINESE_NEGATIONS)
        softened = any(w in window for w in CHINESE_SOFTENERS)
        intensified = any(w in window for w in CHINESE_INTENSIFIERS)
    else:
        words = re.findall(r"[a-z']+", clause)[-ENGLISH_REACH:]
        padded = f" {' '.join(words)} "
        negated = any(f" {n} " in padded for n in ENGLISH_NEGATIONS) or any(
            w.endswith("n't") for w in words
        )
        softened = any(f" {w} " in padded for w in ENGLISH_SOFTENERS)
        intensified = any(f" {w} " in padded for w in ENGLISH_INTENSIFIERS)
    if negated:
        return 0.0
    if softened:
        return cue.weight * SOFTEN
    if intensified:
        return min(cue.weight * INTENSIFY, 0.95)
    return cue.weight


def _punctuation_weight(folded: str) -> float:
    """Runs of "!!" / "??" / "?!": 0.15 for one run of two, up to 0.3."""
    runs = EXCLAMATION_RE.findall(folded)
    if not runs:
        return 0.0
    longest = max(len(run) for run in runs)
    return min(0.3, 0.15 + 0.05 * (longest - 2) + 0.05 * (len(runs) - 1))


def _capitals_weight(folded: str) -> float:
    """English words in capitals: 0.15 for one, 0.35 when most of a message's words are."""
    shouted = [w for w in CAPITALS_RE.findall(folded) if w not in ACRONYMS]
    if not shouted:
        return 0.0
    english_words = re.findall(r"\b[A-Za-z]{3,}\b", folded)
    if len(shouted) >= 3 and len(shouted) * 2 >= len(english_words):
        return 0.35
    return 0.15
