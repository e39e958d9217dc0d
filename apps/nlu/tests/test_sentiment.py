import pytest

from apps.nlu.sentiment import DEFAULT_THRESHOLD, anger_score, is_angry


@pytest.mark.parametrize(
    "text",
    [
        "你们就是一群骗子",
        "什么破服务",
        "垃圾客服",
        "滚！",
        "气死我了",
        "太过分了",
        "坑人啊你们",
        "我要投诉你们",
        "再不处理我就打12315",
        "退钱!",
        "给我退钱！！！",
        "我不管，退钱！",
        "真的受够了",
        "你们是不是有病",
        "This is a scam",
        "Ridiculous. Useless support.",
        "Worst company ever",
        "terrible service",
        "I'm furious",
        "I'm fed up with waiting",
        "wtf is going on",
        "THIS IS RIDICULOUS!!!",
        "You guys are so incompetent",
    ],
)
def test_angry_messages(text):
    assert is_angry(text), anger_score(text)


@pytest.mark.parametrize(
    "text",
    [
        "你好，我想查一下订单",
        "我想退钱",  # a request, not a demand
        "发货有点慢",
        "物流有点慢，不过还行",
        "有点失望",
        "不是骗子吧？",
        "滚动条不见了",
        "请问垃圾袋有货吗",
        "差不多了，谢谢",
        "这首摇滚不错",
        "How do I file a refund?",
        "Delivery is a bit slow",
        "not bad",
        "It's not terrible, just a bit slow",
        "Thanks!!!",
        "Where is my order???",
        "I need a USB cable and an HDMI adapter",
        "my order LM2026112315 hasn't arrived",
        "I'm not angry, just asking",
        "",
    ],
)
def test_calm_or_mildly_unhappy_messages(text):
    assert not is_angry(text), anger_score(text)


def test_score_is_between_zero_and_one():
    pile_up = "垃圾骗子滚！！！气死了 SCAM WTF FURIOUS USELESS!!!"
    assert 0.95 <= anger_score(pile_up) <= 1.0
    assert anger_score("你好") == 0.0


def test_intensifiers_raise_and_softeners_lower_the_score():
    assert anger_score("太恶心了") > anger_score("恶心")
    assert anger_score("有点恶心") < anger_score("恶心")
    assert anger_score("so disappointed") > anger_score("disappointed")
    assert anger_score("a bit annoyed") < anger_score("annoyed")


def test_negation_cancels_a_cue_only_in_its_own_clause():
    assert anger_score("not ridiculous") == 0.0
    assert anger_score("No, this is ridiculous") == anger_score("this is ridiculous")
    assert anger_score("我没生气") == 0.0
    assert anger_score("我不管，太过分了") == anger_score("太过分了")


def test_repeated_punctuation_and_capitals_add_to_a_cue():
    assert anger_score("terrible!!!") > anger_score("terrible")
    assert anger_score("这也太离谱了？？？") > anger_score("这也太离谱了")
    assert anger_score("THIS IS TERRIBLE") > anger_score("this is terrible")
    assert is_angry("THIS IS TERRIBLE!!!")
    assert not is_angry("this is terrible")


def test_a_longer_phrase_hides_the_shorter_one_inside_it():
    # "投诉" (0.4) inside "我要投诉" (0.7) is not counted again.
    assert anger_score("我要投诉") == pytest.approx(0.7)
    assert anger_score("投诉") == pytest.approx(0.4)


def test_a_question_is_not_a_negation():
    assert anger_score("你们是不是有病") == anger_score("你们有病")


def test_threshold_is_configurable():
    assert DEFAULT_THRESHOLD == 0.6
    assert not is_angry("有点失望")
    assert is_angry("有点失望", threshold=0.1)
    assert not is_angry("气死我了", threshold=0.99)


def test_mum_is_not_a_curse() -> None:
    # "妈的" is a curse; "妈妈的礼物" (my mum's present) is not.
    assert not is_angry("这是送给妈妈的礼物，怎么取消订单")
    assert is_angry("妈的，怎么还没发货")
