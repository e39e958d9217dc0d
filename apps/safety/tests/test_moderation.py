"""Moderation: the shipped classifier on clear cases, thresholds, the lexicon staff edit, and
`manage.py evaluate moderation` on a small CSV written here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from apps.safety import classifier
from apps.safety.models import ModerationTerm
from apps.safety.moderation import moderate, moderate_many

pytestmark = pytest.mark.django_db

OFFENSIVE = [
    ("你这个傻逼，滚远点", "zh"),
    ("河南人都是骗子，一群垃圾", "zh"),
    ("黑人就是低等人种，滚出中国", "zh"),
    ("女人就是贱，活该被打", "zh"),
    ("shut up you stupid bitch", "en"),
    ("you are a worthless piece of trash, go to hell", "en"),
]
CLEAN = [
    ("我的快递三天了还没到，能帮我查一下吗？", "zh"),
    ("退款多久能到账？", "zh"),
    ("我们应该尊重每个地区的人，反对地域歧视。", "zh"),
    ("女性和男性在工作中应该同工同酬。", "zh"),
    ("How long does a refund take?", "en"),
    ("My package arrived damaged, can I get a replacement?", "en"),
]

# Support conversations: a complaint about a thing is not an offence (COLD and Davidson hold
# none, so their heads alone blocked these; apps/safety/data/README.md draws the line), an
# insult or threat at the agent still is. None of them is a line of the training file.
COMPLAINTS = [
    ("东西坏了", "zh"),
    ("质量太差了", "zh"),
    ("不喜欢", "zh"),
    ("为什么拉链坏了？", "zh"),
    ("你们服务太差了", "zh"),
    ("这个破烤箱用了两次就不热了", "zh"),
    ("I hate this jacket", "en"),
    ("worst delivery ever", "en"),
    ("the blender I got is broken", "en"),
    ("this vacuum is useless and your delivery was a joke", "en"),
]
INSULTS_AT_STAFF = [
    ("你这个蠢猪客服，赶紧给我滚", "zh"),
    ("你们客服都是一群没脑子的废物", "zh"),
    ("再不退款我就去你们公司打死你", "zh"),
    ("you brainless moron, read what I wrote", "en"),
    ("you pathetic clown, can't you read", "en"),
    ("you worthless scumbag, just do your job", "en"),
]


@pytest.mark.parametrize(("text", "language"), OFFENSIVE)
def test_clearly_offensive_messages_are_blocked(text: str, language: str) -> None:
    verdict = moderate(text, language)
    assert verdict.blocked, verdict
    assert verdict.flagged


@pytest.mark.parametrize(("text", "language"), CLEAN)
def test_ordinary_messages_pass(text: str, language: str) -> None:
    verdict = moderate(text)  # the language detected
    assert not verdict.blocked, verdict
    assert verdict.score is not None and verdict.score < verdict.threshold


@pytest.mark.parametrize(
    "text",
    [
        "do you sell shoes",
        "do you sell Nike shoes",
        "my new shoes hurt",
        "do you sell horseshoes",
        "can I pay with bitcoin",
        "should I buy bitcoin now",
    ],
)
def test_words_holding_an_insult_inside_them_pass(text: str) -> None:
    # English n-grams stay inside words: with n-grams across the whole text, "shoes" held the
    # tweets' "hoes" and "bitcoin" their "bitc", and each of these scored 0.78-0.997.
    verdict = moderate(text, "en")
    assert not verdict.blocked, verdict


def test_english_ngrams_stay_inside_words_and_chinese_ones_do_not() -> None:
    from apps.safety import classifier

    model = classifier.shipped_model()
    assert model.heads["en"].analyzer == "char_wb" and model.heads["zh"].analyzer == "char"
    # Inside words, " hoe" (a word's start) is no n-gram of "shoes"; across them, every
    # n-gram of "hoes" is one of "shoes".
    word_start = set(classifier.char_counts(["hoe"], (4, 4), "char_wb").indices)
    assert not word_start & set(classifier.char_counts(["shoes"], (4, 4), "char_wb").indices)
    across = set(classifier.char_counts(["hoes"], (4, 4), "char").indices)
    assert across <= set(classifier.char_counts(["shoes"], (4, 4), "char").indices)


def test_the_classifier_alone_blocks_without_any_lexicon_term() -> None:
    ModerationTerm.objects.all().delete()
    verdict = moderate("河南人都是骗子，一群垃圾")
    assert verdict.blocked and verdict.source == "classifier"
    assert verdict.categories == ("offensive",)


def test_a_score_at_the_threshold_blocks_and_just_below_passes(settings: Any) -> None:
    ModerationTerm.objects.all().delete()
    text = "这个客服态度真差，什么玩意儿"
    score = moderate(text).score
    assert score is not None and 0.0 < score < 1.0
    settings.MODERATION = {**settings.MODERATION, "THRESHOLD": score}
    at = moderate(text)
    assert at.blocked and at.threshold == score
    settings.MODERATION = {**settings.MODERATION, "THRESHOLD": score + 1e-6}
    below = moderate(text)
    assert not below.blocked and below.score == pytest.approx(score)


def test_the_shipped_thresholds_are_used_unless_settings_say_otherwise(settings: Any) -> None:
    model = classifier.shipped_model()
    assert set(model.heads) == {"zh", "en"}
    for head in model.heads.values():
        assert 0.05 <= head.threshold <= 0.95
    settings.MODERATION = {**settings.MODERATION, "THRESHOLD": None}
    assert moderate("退款多久能到账？").threshold == model.heads["zh"].threshold
    assert moderate("How long does a refund take?").threshold == model.heads["en"].threshold


def test_moderation_can_be_switched_off(settings: Any) -> None:
    settings.MODERATION = {**settings.MODERATION, "ENABLED": False}
    assert not moderate("你这个傻逼").blocked


def test_the_default_lexicon_blocks_insults_in_both_languages() -> None:
    # Spaces and symbols between the characters do not hide a Chinese term; English terms
    # match whole words only, in any case.
    for text in ("你个傻 逼", "傻*逼", "FUCK YOU", "what an asshole."):
        verdict = moderate(text)
        assert verdict.blocked and verdict.source == "lexicon", text
    assert "傻逼" in moderate("你个傻 逼").terms


@pytest.mark.parametrize("text", ["你是猪吗", "你是猪啊", "你 是 头 猪"])
def test_calling_the_agent_a_pig_is_blocked(text: str) -> None:
    verdict = moderate(text, "zh")
    assert verdict.blocked and verdict.source == "lexicon", verdict


@pytest.mark.parametrize("text", ["我买的猪肉脯坏了", "小猪佩奇玩具能退吗", "猪肉怎么退"])
def test_pork_and_toy_pigs_pass(text: str) -> None:
    assert not moderate(text, "zh").blocked


def test_lexicon_edits_take_effect_at_once() -> None:
    text = "your product is a scam and you are clowns"
    assert not moderate(text).blocked  # the classifier lets it through
    term = ModerationTerm.objects.create(
        term="clowns", language="en", category="insult", action="block"
    )
    verdict = moderate(text)
    assert verdict.blocked and verdict.source == "lexicon" and verdict.categories == ("insult",)
    assert not moderate("Do you sell clown costumes?").blocked  # whole words only

    term.action = "flag"
    term.save()
    flagged = moderate(text)
    assert not flagged.blocked and flagged.flagged and flagged.terms == ("clowns",)

    term.enabled = False
    term.save()
    assert not moderate(text).flagged

    term.enabled = True
    term.save()
    term.delete()
    assert not moderate(text).flagged


def test_a_recurring_texts_score_is_kept_but_the_lexicon_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from apps.safety import moderation

    embedded: list[str] = []
    real = moderation._query_embed

    def counting(name: str, texts: Any) -> Any:
        embedded.extend(texts)
        return real(name, texts)

    monkeypatch.setattr(moderation, "_query_embed", counting)
    answer = "Refunds reach your original payment method within 3-5 working days, clowns."
    first = moderate(answer, "en", recurring=True)
    second = moderate(answer, "en", recurring=True)
    assert not first.blocked and second.score == first.score
    assert embedded == [answer]  # scored once; the second time from the cache
    moderate(answer, "en")
    assert embedded == [answer, answer]  # without `recurring`, scored every time

    ModerationTerm.objects.create(term="clowns", language="en", category="insult", action="block")
    assert moderate(answer, "en", recurring=True).blocked


def test_language_specific_terms_apply_to_that_language_only() -> None:
    ModerationTerm.objects.create(term="垃圾店", language="zh", category="insult", action="block")
    assert moderate("这就是个垃圾店").blocked
    # An English message that quotes it is not a Chinese message.
    assert not moderate("What does 垃圾店 mean in English? I saw it in a review today").blocked


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _evaluate(*args: str) -> tuple[dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("evaluate", "moderation", *args, stdout=out, stderr=err)
    return json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def test_evaluate_reports_rates_per_topic_on_a_labelled_csv(tmp_path: Path) -> None:
    topics = ["region", "race", "gender", "region", "race", "gender"]
    rows = [
        {"TEXT": text, "label": "1", "topic": topic}
        for (text, _), topic in zip(OFFENSIVE, topics, strict=True)
    ]
    rows += [
        {"TEXT": text, "label": "0", "topic": topic}
        for (text, _), topic in zip(CLEAN, topics, strict=True)
    ]
    path = tmp_path / "moderation.csv"
    _write_csv(path, rows)
    result, progress = _evaluate(
        "--data", str(path), "--text-col", "TEXT", "--label-col", "label", "--positive", "1"
    )
    assert "moderating 12 texts" in progress
    assert result["n"] == 12
    assert result["accuracy"] == 1.0 and result["f1"] == 1.0 and result["macro_f1"] == 1.0
    assert result["precision"] == 1.0 and result["recall"] == 1.0
    assert result["false_positive_rate"] == 0.0
    assert result["topic_false_positive_rate"] == {"gender": 0.0, "race": 0.0, "region": 0.0}


def test_evaluate_counts_several_positive_labels_as_unsafe(tmp_path: Path) -> None:
    # Davidson-style: class 0 hate, 1 offensive, 2 neither; one safe text is blocked on
    # purpose (a lexicon term), so the rates are not all perfect.
    ModerationTerm.objects.create(term="refund", language="en", category="other", action="block")
    rows = [
        {"tweet": "shut up you stupid bitch", "class": "1"},
        {"tweet": "you are a worthless piece of trash, go to hell", "class": "0"},
        {"tweet": "How long does a refund take?", "class": "2"},
        {"tweet": "My package arrived damaged, can I get a replacement?", "class": "2"},
    ]
    path = tmp_path / "davidson.csv"
    _write_csv(path, rows)
    result, _ = _evaluate(
        "--data", str(path), "--text-col", "tweet", "--label-col", "class", "--positive", "0,1"
    )
    assert result["n"] == 4 and result["recall"] == 1.0
    assert result["accuracy"] == 0.75 and result["false_positive_rate"] == 0.5
    assert result["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["f1"] == pytest.approx(0.8, abs=1e-4)
    assert result["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-4)
    assert "topic_false_positive_rate" not in result


def test_evaluate_names_a_missing_file_or_column(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        _evaluate("--data", str(tmp_path / "nope.csv"), "--text-col", "TEXT")
    path = tmp_path / "x.csv"
    _write_csv(path, [{"text": "hello", "label": "0"}])
    with pytest.raises(CommandError, match="no column TEXT"):
        _evaluate("--data", str(path), "--text-col", "TEXT", "--label-col", "label")


@pytest.mark.parametrize(("text", "language"), COMPLAINTS)
def test_complaints_about_products_and_service_pass(text: str, language: str) -> None:
    verdict = moderate(text)
    assert not verdict.blocked, verdict


@pytest.mark.parametrize(("text", "language"), INSULTS_AT_STAFF)
def test_insults_and_threats_at_staff_are_blocked_by_the_classifier(
    text: str, language: str
) -> None:
    ModerationTerm.objects.all().delete()  # no lexicon term helps
    verdict = moderate(text)
    assert verdict.blocked and verdict.source == "classifier", verdict


@pytest.mark.parametrize("text", ["？", "?", "...", "？？？", "。。。", "!!"])
def test_messages_without_a_letter_or_digit_are_not_scored(text: str) -> None:
    # The Chinese head read a bare "？" as an insult (0.69): there is nothing in it to read.
    for language in ("zh", "en"):
        verdict = moderate(text, language)
        assert not verdict.blocked and verdict.score is None, verdict
    first, _ = moderate_many([text, "你好"], ["zh", "zh"])
    assert first.score is None


def test_a_lexicon_term_without_letters_still_blocks() -> None:
    ModerationTerm.objects.create(term="🖕", language="any", action="block", category="insult")
    assert moderate("🖕", "en").blocked
