"""`manage.py moderation_train` on a few dozen texts written here: the project's support
messages are trained on by default, as safe examples, and `--no-support` leaves them out."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from apps.safety import classifier, training

ZH_OFFENSIVE = [
    "河南人都是骗子，一群垃圾",
    "你这个蠢猪，滚远点",
    "女人就是贱，活该",
    "黑人都是低等人种",
    "你们全家不得好死",
    "一群废物，脑子有病",
    "乡下人素质就是低，滚回去",
    "死胖子，恶心死了",
]
ZH_SAFE = [
    "我们应该尊重每个地区的人",
    "女性和男性应该同工同酬",
    "今天天气不错，出去走走",
    "反对地域歧视，人人平等",
    "这本书讲的是种族平等",
    "周末和朋友去爬山了",
    "我老家是河南的，欢迎来玩",
    "谢谢大家的帮助",
]
EN_OFFENSIVE = [
    "shut up you stupid hoe",
    "you are a worthless piece of trash",
    "go to hell you ugly loser",
    "these trash people should die",
    "what a dumb slut",
    "you brainless pig",
]
EN_SAFE = [
    "great game last night, what a finish",
    "happy birthday to my best friend",
    "the weather is lovely today",
    "just finished a good book",
    "coffee with my sister this morning",
    "can't wait for the weekend trip",
]
SUPPORT = [
    ("东西坏了，能换一个吗", "zh"),
    ("质量太差了，穿一次就破", "zh"),
    ("快递太慢了，还没到", "zh"),
    ("不喜欢，想退货", "zh"),
    ("东西收到就是坏的", "zh"),
    ("the item arrived broken", "en"),
    ("worst delivery ever, still not here", "en"),
    ("I hate this jacket, the zipper broke", "en"),
    ("this is useless, it stopped working", "en"),
    ("quality is terrible", "en"),
]


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def public_data(tmp_path: Path) -> list[str]:
    """COLD train and dev, and a Davidson file, each a few dozen rows."""
    cold = [[text, 1] for text in ZH_OFFENSIVE] + [[text, 0] for text in ZH_SAFE]
    tweets = [(text, "1") for text in EN_OFFENSIVE] + [(text, "2") for text in EN_SAFE]
    # Every tweet four times under other row indices, so each of Davidson's tenths (chosen by
    # a hash of the index) likely holds both classes.
    davidson = [[i, cls, f"{text} {i}"] for i, (text, cls) in enumerate(tweets * 4)]
    return [
        "--cold",
        _write(tmp_path / "cold.csv", ["TEXT", "label"], cold),
        "--cold-dev",
        _write(tmp_path / "cold_dev.csv", ["TEXT", "label"], cold),
        "--davidson",
        _write(tmp_path / "davidson.csv", ["row_index", "class", "tweet"], davidson),
        "--cache",
        "",
    ]


def _train(tmp_path: Path, name: str, *args: str) -> tuple[classifier.ModerationModel, Any]:
    out = io.StringIO()
    path = tmp_path / f"{name}.npz"
    call_command("moderation_train", *args, "--out", str(path), stdout=out, stderr=io.StringIO())
    return classifier.ModerationModel.load(path), json.loads(out.getvalue())


def test_the_support_messages_are_trained_on_as_safe_by_default(
    tmp_path: Path, public_data: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    support = _write(
        tmp_path / "support.csv",
        ["text", "label", "language"],
        [[text, 0, language] for text, language in SUPPORT],
    )
    monkeypatch.setattr(training, "SUPPORT_PATH", Path(support))
    _, info = _train(tmp_path, "default", *public_data)
    # A share of the public safe texts big enough to show on data this small.
    with_support, _ = _train(tmp_path, "with", *public_data, "--support-share", "2")
    without, info_without = _train(tmp_path, "without", *public_data, "--no-support")

    support_info = info["data"]["support"]
    assert support_info["path"] == "support.csv"
    assert support_info["share"] == training.SUPPORT_SHARE
    assert support_info["zh"]["n"] == support_info["en"]["n"] == 5
    # The five Chinese messages together weigh the share of COLD's eight safe texts.
    assert support_info["zh"]["weight"] == pytest.approx(
        training.SUPPORT_SHARE * len(ZH_SAFE) / 5, abs=1e-4
    )
    assert info_without["data"]["support"] == {"path": None, "share": 0.0}
    # Complaints like the support messages, not the same words, score lower with them.
    for text, language in (("收到的东西坏了", "zh"), ("the delivery was the worst", "en")):
        before = without.score_many([text], language)[0]
        after = with_support.score_many([text], language)[0]
        assert after < before - 0.1, (text, before, after)


def test_the_shipped_support_file_has_hundreds_of_messages_per_language() -> None:
    support = training.read_support(training.SUPPORT_PATH)
    for language in ("zh", "en"):
        labels = support[language].labels
        assert (labels == 0).sum() >= 300 and (labels == 1).sum() >= 100
