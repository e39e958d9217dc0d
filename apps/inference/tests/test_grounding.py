"""The grounding check: hard facts in generated answers against the evidence, sentence support,
the score, and the streaming hold-back. Pure functions: no database."""

from __future__ import annotations

import time

import pytest

from apps.inference.grounding import (
    Evidence,
    Fact,
    check,
    extract_facts,
    safe_prefix_end,
    unsupported_facts,
)

ZH_SOURCE = (
    "退货政策：商品签收后七天内可申请无理由退货，退款将在3-5个工作日内原路退回。"
    "客服热线 400-820-1234，服务时间为每天 9:00-21:00。"
    "会员订单满199元包邮，运费为¥12。"
    "双十一活动期间（2026年11月11日至11月20日）部分商品享受百分之十的折扣。"
    "如需帮助，请发送邮件至 support@example.com 或访问 https://help.example.com/refund/policy。"
)
EN_SOURCE = (
    "Return policy: items can be returned within 30 days of delivery for a full refund. "
    "Refunds are issued to the original payment method within 3 to 5 business days. "
    "Express shipping costs $19.99 and takes 48 hours. "
    "Our support line +1 (800) 555-0123 is open from 9am to 6pm. "
    "The holiday sale ends on November 20, 2026 and gives members 15% off."
)
CONVERSATION = "客户：我的订单 LM2026112001 还没到，手机 138 1234 5678。"


@pytest.fixture(scope="module")
def evidence() -> Evidence:
    return Evidence([ZH_SOURCE, EN_SOURCE, CONVERSATION])


def kinds(text: str) -> list[tuple[str, str]]:
    return [(fact.kind, fact.key) for fact in extract_facts(text)]


def unsupported(text: str, evidence: Evidence) -> list[str]:
    return [fact.text for fact in unsupported_facts(text, evidence)]


# --- Extraction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请拨打 400-820-1234", [("phone", "4008201234")]),
        ("Call +86 138 1234 5678 now", [("phone", "13812345678")]),
        ("手机13812345678", [("phone", "13812345678")]),
        (
            "call 1-800-555-0123 or (800) 555-0123",
            [("phone", "18005550123"), ("phone", "8005550123")],
        ),
        ("Mail SUPPORT@Example.com.", [("email", "support@example.com")]),
        ("见 https://Help.Example.com/Refund/）", [("url", "help.example.com/refund")]),
        ("visit www.example.com/help.", [("url", "example.com/help")]),
        ("订单号lm2026112001", [("order", "LM2026112001")]),
        ("¥199 或 199.00元", [("price", "199"), ("price", "199")]),
        (
            "$19.99, RMB 50, 50 yuan, 3万元",
            [("price", "19.99"), ("price", "50"), ("price", "50"), ("price", "30000")],
        ),
        ("九十九元", [("price", "99")]),
        ("2026-11-20 / 2026/11/20", [("date", "2026-11-20"), ("date", "2026-11-20")]),
        ("11月20日，二〇二六年十一月二十日", [("date", "--11-20"), ("date", "2026-11-20")]),
        (
            "Nov 20, November 20, 2026, 20 November 2026",
            [("date", "--11-20"), ("date", "2026-11-20"), ("date", "2026-11-20")],
        ),
        (
            "7天、七天、7 days、48小时",
            [("duration", "7"), ("duration", "7"), ("duration", "7"), ("duration", "48")],
        ),
        (
            "3-5个工作日 / 3–5 business days / 三到五天",
            [("duration", "3-5"), ("duration", "3-5"), ("duration", "3-5")],
        ),
        (
            "两周内，十五天，a 30-day window",
            [("duration", "2"), ("duration", "15"), ("duration", "30")],
        ),
        (
            "1,299 and 0.5 and 10% and 百分之十",
            [("number", "1299"), ("number", "0.5"), ("number", "10"), ("number", "10")],
        ),
        (
            "营业时间 9:00-21:00，下午6点关门",
            [("number", "9:00"), ("number", "21:00"), ("number", "18:00")],
        ),
    ],
)
def test_extracts_each_kind_with_a_normalised_key(text: str, expected: list[tuple[str, str]]):
    assert kinds(text) == expected


def test_spans_are_those_of_the_answer_as_written_even_with_full_width_characters():
    text = "请拨打４００－８２０－１２３４，或于１１月２０日前付款￥１９９。"
    facts = extract_facts(text)
    assert [(f.kind, f.key) for f in facts] == [
        ("phone", "4008201234"),
        ("date", "--11-20"),
        ("price", "199"),
    ]
    for fact in facts:
        assert text[fact.start : fact.end] == fact.text
    assert facts[0].text == "４００－８２０－１２３４"


@pytest.mark.parametrize(
    "text",
    [
        "只需 1 步",  # a lone digit
        "1. 登录账户\n2. 打开订单",  # list markers
        "退货需要签收凭证[1][2]。",  # citation markers
        "See the policy [1, 2] and 【3】.",
        "Use the H100 model with v2 settings",  # numbers glued to a word
    ],
)
def test_lone_digits_list_markers_and_citations_are_not_facts(text: str):
    assert extract_facts(text) == []


def test_the_chinese_clause_comma_does_not_join_numbers():
    assert kinds("共3，199元") == [("price", "199")]
    assert kinds("共3,199元") == [("price", "3199")]


def test_fact_is_a_frozen_value():
    fact = extract_facts("¥199")[0]
    assert fact == Fact(kind="price", text="¥199", start=0, end=4, key="199")
    with pytest.raises(AttributeError):
        fact.key = "200"  # type: ignore[misc]


# --- Support of each kind ---------------------------------------------------------------------


def test_phone_numbers_compare_on_digits(evidence: Evidence):
    assert unsupported("请拨打 4008201234 或 400 820 1234", evidence) == []
    assert unsupported("Call (800) 555-0123 or 1-800-555-0123", evidence) == []
    assert unsupported("Call +86 138-1234-5678", evidence) == []  # the customer's own mobile


def test_an_invented_phone_number_is_flagged(evidence: Evidence):
    answer = "请拨打客服热线 400-555-0199 或 400-820-1234。"
    assert unsupported(answer, evidence) == ["400-555-0199"]
    assert unsupported("Call us at +1 800 555 0199.", evidence) == ["+1 800 555 0199"]


def test_emails_are_case_insensitive(evidence: Evidence):
    assert unsupported("邮件请发至 Support@Example.COM。", evidence) == []
    assert unsupported("Write to refunds@example.com.", evidence) == ["refunds@example.com"]


def test_urls_match_with_or_without_scheme_and_on_whole_path_prefixes(evidence: Evidence):
    assert unsupported("详见 https://help.example.com/refund/policy。", evidence) == []
    assert unsupported("See help.example.com/refund/policy/.", evidence) == []
    assert unsupported("See http://help.example.com/refund）", evidence) == []  # a parent page
    assert unsupported("See help.example.com.", evidence) == []
    assert unsupported("填写 https://help.example.com/refund-form", evidence) == [
        "https://help.example.com/refund-form"
    ]
    assert unsupported("Go to https://shop.example.org/returns", evidence) == [
        "https://shop.example.org/returns"
    ]


def test_order_numbers_match_case_insensitively(evidence: Evidence):
    assert unsupported("Your order lm2026112001 has shipped.", evidence) == []
    assert unsupported("您的订单 LM2026112099 已发货。", evidence) == ["LM2026112099"]


def test_prices_compare_as_numbers(evidence: Evidence):
    assert unsupported("满199.00元包邮，运费12元。", evidence) == []
    assert unsupported("Express costs $19.99 (RMB 12 in China).", evidence) == []
    assert unsupported("运费为¥16。", evidence) == ["¥16"]
    assert unsupported("Express costs 25 dollars.", evidence) == ["25 dollars"]


def test_dates_in_any_form_and_language(evidence: Evidence):
    assert unsupported("活动截止到 2026-11-20。", evidence) == []
    assert unsupported("The sale ends Nov 20.", evidence) == []
    assert unsupported("活动于11月20日结束", evidence) == []
    assert unsupported("It starts on 11 November 2026.", evidence) == []  # 2026年11月11日
    assert unsupported("The sale ends on 2026/11/21.", evidence) == ["2026/11/21"]
    assert unsupported("活动于2025年11月11日开始", evidence) == ["2025年11月11日"]
    # The source gives "11月20日" without a year: any year is backed.
    assert unsupported("活动于2025年11月20日结束", evidence) == []


def test_durations_compare_their_numbers_in_either_language_and_numeral(evidence: Evidence):
    assert unsupported("签收后7天内可以退货。", evidence) == []  # 七天 in the source
    assert unsupported("You can return items within 7 days.", evidence) == []
    assert unsupported("退款3到5个工作日到账，30天内可退。", evidence) == []
    assert unsupported("Refunds take 3-5 business days; express takes 48 hours.", evidence) == []
    assert unsupported("退款需要两周。", evidence) == ["两周"]
    assert unsupported("Refunds take 10-14 business days.", evidence) == ["10-14 business days"]
    assert unsupported("退款需要3-8个工作日。", evidence) == ["3-8个工作日"]


def test_chinese_numerals_in_the_evidence_back_arabic_numbers():
    evidence = Evidence(["会员可享受十五天无理由退货，最多两万元。"])
    assert unsupported("Members get 15 days and up to 20,000 yuan.", evidence) == []
    assert unsupported("会员可享受 16 天退货", evidence) == ["16 天"]


def test_plain_numbers_percentages_and_times(evidence: Evidence):
    assert unsupported("会员享受10%折扣，members get 15 percent off.", evidence) == []
    assert unsupported("折扣为百分之十五。", evidence) == []
    assert unsupported("We are open 9:00 to 18:00, i.e. 9am-6pm.", evidence) == []
    assert unsupported("客服工作时间为上午9点到晚上9点。", evidence) == []
    assert unsupported("会员享受25%折扣。", evidence) == ["25%"]
    assert unsupported("We close at 10pm.", evidence) == ["10pm"]
    assert unsupported("There are 250 stores.", evidence) == ["250"]


def test_a_number_inside_a_larger_evidence_number_is_not_support():
    evidence = Evidence(["The policy changed in 2026. The TV costs 1,299 yuan."])
    assert unsupported("It changed on the 20th, in 2026.", evidence) == ["20"]
    assert unsupported("The TV costs 299 yuan.", evidence) == ["299 yuan"]
    assert unsupported("The TV costs 1299.00 yuan.", evidence) == []


def test_citation_markers_are_ignored(evidence: Evidence):
    answer = "签收后七天内可申请无理由退货[1]。Refunds take 3 to 5 business days [2][3]."
    assert unsupported(answer, evidence) == []
    assert check(answer, evidence).score == 1.0


# --- Sentences and the score ---------------------------------------------------------------------


def test_sentence_support_is_the_share_of_content_tokens_in_the_evidence(evidence: Evidence):
    assert evidence.sentence_support("Refunds are issued to the original payment method.") == 1.0
    assert evidence.sentence_support("Our rockets fly to Mars every Tuesday.") == 0.0
    assert evidence.sentence_support("退款将原路退回。") == 1.0
    assert evidence.sentence_support("火箭每周二飞往火星。") == 0.0
    assert evidence.sentence_support("Hope this helps!") == 1.0  # nothing left to check


def test_a_faithful_paraphrase_scores_high(evidence: Evidence):
    answer = (
        "您好！商品签收后7天内可以申请无理由退货[1]。"
        "退款会在3-5个工作日内原路退回。"
        "如需帮助，可以拨打客服热线400-820-1234，服务时间为每天9:00-21:00。"
        "如有其他问题请随时联系我们。"
    )
    result = check(answer, evidence)
    assert result.score >= 0.8, result
    assert result.unsupported_facts == []
    assert result.facts == 5

    english = (
        "You can return items within 30 days of delivery for a full refund. "
        "The refund goes back to your original payment method within 3-5 business days. "
        "Hope this helps!"
    )
    result = check(english, evidence)
    assert result.score >= 0.8, result
    assert result.sentences == 2


def test_an_off_topic_invented_answer_scores_low(evidence: Evidence):
    answer = (
        "Our Paris flagship store opens a rooftop champagne lounge every Friday evening. "
        "Platinum members receive complimentary helicopter transfers from the airport. "
        "Loyalty points convert into airline miles automatically each quarter."
    )
    result = check(answer, evidence)
    assert result.score <= 0.3
    assert result.sentences == 3
    assert [entry["kind"] for entry in result.unsupported] == ["sentence"] * 3

    chinese = "我们的巴黎旗舰店每周五晚上开放屋顶香槟酒廊。白金会员可以免费乘坐直升机往返机场。"
    assert check(chinese, evidence).score <= 0.3


def test_an_unsupported_fact_pulls_the_score_below_one_even_in_a_short_sentence(
    evidence: Evidence,
):
    result = check("Call 400-555-0199.", evidence)
    assert result.score < 1.0
    assert result.sentences == 1
    assert result.unsupported == [{"kind": "phone", "text": "400-555-0199", "start": 5, "end": 17}]
    assert result.unsupported_facts == result.unsupported


def test_unsupported_entries_come_in_answer_order_with_answer_offsets(evidence: Evidence):
    answer = "商品签收后七天内可申请无理由退货。火箭每周二飞往火星，票价¥888。"
    result = check(answer, evidence)
    assert result.sentences == 2
    assert result.supported == 1
    assert result.score == 0.5
    assert [(e["kind"], e["text"]) for e in result.unsupported] == [
        ("sentence", "火箭每周二飞往火星，票价¥888。"),
        ("price", "¥888"),
    ]
    for entry in result.unsupported:
        assert answer[entry["start"] : entry["end"]] == entry["text"]


def test_pleasantries_and_short_sentences_are_not_checked(evidence: Evidence):
    result = check("好的。Hope this helps! 如有其他问题请随时联系我们。祝您购物愉快！", evidence)
    assert (result.sentences, result.score, result.unsupported) == (0, 1.0, [])


def test_the_threshold_is_the_callers(evidence: Evidence):
    # About half of this sentence's words are in the sources.
    answer = "Refunds for returned items reach customers through bank transfer sometimes."
    support = evidence.sentence_support(answer)
    assert 0.2 < support < 0.8
    assert check(answer, evidence, sentence_threshold=support).score == 1.0
    assert check(answer, evidence, sentence_threshold=support + 0.01).score == 0.0


def test_a_date_with_a_dot_is_not_split_into_two_sentences(evidence: Evidence):
    result = check("The holiday sale ends on Nov. 20, 2026 for members.", evidence)
    assert result.unsupported == []
    assert result.sentences == 1


def test_empty_answer():
    result = check("", Evidence([]))
    assert (result.score, result.sentences, result.facts, result.unsupported) == (1.0, 0, 0, [])


# --- Streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "released"),
    [
        ("请拨打 400-82", "请拨打 "),
        ("see https://help.exa", "see "),
        ("write to support@exam", "write to "),
        ("请拨打 400 820 12", "请拨打 "),
        ("Call +86 138", "Call "),
        ("退款将在3-5个工", "退款将在"),
        ("退款将在3到5个工作", "退款将在"),
        ("Refunds take 3 to 5 business ", "Refunds take "),
        ("Refunds take 3 to 5 business days and", "Refunds take 3 to 5 business days "),
        ("价格为￥1", "价格为"),
        ("活动截至11月2", "活动截至"),
        ("折扣为百分之", "折扣为"),
        ("我们收到了您的订单。", "我们收到了您的订单。"),
        ("", ""),
    ],
)
def test_safe_prefix_end_holds_back_what_may_still_be_a_fact(text: str, released: str):
    assert text[: safe_prefix_end(text)] == released


def test_streaming_never_shows_an_invented_phone_number(evidence: Evidence):
    answer = "您好，请拨打客服热线 400-555-0199 咨询，或者拨打 400-820-1234。"
    shown = 0
    stopped_at = None
    for end in range(1, len(answer) + 1):
        prefix = answer[:end]
        safe = max(shown, safe_prefix_end(prefix))
        if unsupported_facts(prefix[:safe], evidence):
            stopped_at = safe
            break
        shown = safe
    assert stopped_at is not None
    assert answer[:shown] == "您好，请拨打客服热线 "


def test_released_prefix_never_shrinks_as_the_answer_grows():
    for answer in (
        "退款将在3-5个工作日内到账，详见 https://help.example.com/refund/policy 。",
        "Refunds take 3 to 5 business days; call +1 (800) 555-0123 between 9am and 6pm.",
    ):
        ends = [safe_prefix_end(answer[:i]) for i in range(len(answer) + 1)]
        assert ends == sorted(ends)


# --- Performance sanity ---------------------------------------------------------------------------


def test_check_is_fast_enough_to_run_on_every_answer():
    sources = [(ZH_SOURCE + EN_SOURCE)[i * 37 :][:800].ljust(800, "。") for i in range(5)]
    evidence = Evidence(sources)
    answer = (
        "商品签收后7天内可以申请无理由退货，退款会在3-5个工作日内原路退回。"
        "Refunds go back to the original payment method within 3 to 5 business days. "
        "客服热线400-820-1234，服务时间为每天9:00-21:00。Express shipping costs $19.99. "
    )
    answer = (answer * 3)[:600]
    calls = 200
    started = time.perf_counter()
    for _ in range(calls):
        check(answer, evidence)
    average_ms = (time.perf_counter() - started) * 1000 / calls
    # A sanity guard, not a benchmark: the target is < 5 ms; loose so a busy CI box passes.
    assert average_ms < 20, f"{average_ms:.2f} ms per check"
