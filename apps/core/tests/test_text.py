import pytest

from apps.core.text import detect_language, keyword_terms, normalize, split_sentences


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("退款多久到账", "zh"),
        ("How long does a refund take?", "en"),
        ("我的 iPhone 15 订单", "zh"),
        ("order ZX12345 没收到", "zh"),
        ("", "en"),
        ("12345", "en"),
        # Links, e-mail addresses and codes carry no language.
        ("照片在这 https://img.example.com/uploads/photo-a.jpg", "zh"),
        ("发到 customer.service@example.com 可以吗", "zh"),
        ("LM2026111804 地址填错了", "zh"),
        ("see https://example.com/zh/帮助", "en"),
        ("https://example.com/a", "en"),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language


def test_normalize_folds_full_width_and_space():
    assert normalize("  ＡＢＣ１２３\n\t退款  ") == "ABC123 退款"


def test_english_terms_are_stemmed_without_stop_words():
    assert keyword_terms("How do I get my refunds?") == ["refund"]
    assert keyword_terms("Refunded orders") == keyword_terms("refund order")


def test_chinese_terms_are_characters_and_latin_words_stay_whole():
    assert keyword_terms("怎么关闭账户") == ["怎", "么", "关", "闭", "账", "户"]
    assert set(keyword_terms("关掉")) & set(keyword_terms("怎么关闭账户"))
    assert keyword_terms("iPhone 15 退款") == ["iphone", "15", "退", "款"]


def test_chinese_segmentation_keeps_words_whole():
    from apps.core.text import segment_chinese

    assert segment_chinese("我想申请退款") == ["我", "想", "申请", "退款"]


def test_split_sentences_in_both_languages():
    assert split_sentences("先登录。再点击退款！可以吗？") == [
        "先登录。",
        "再点击退款！",
        "可以吗？",
    ]
    assert split_sentences("Version 3.5 is out. Update now! Done") == [
        "Version 3.5 is out.",
        "Update now!",
        "Done",
    ]
