import itertools
import time

import pytest

from apps.safety import pii
from apps.safety.pii import (
    ADDRESS,
    BANK_CARD,
    EMAIL,
    ID_CARD,
    IP,
    PHONE,
    PiiSpan,
    contains_pii,
    detect,
    id_check_character,
    luhn_valid,
    redact,
)


def kinds_and_texts(text: str) -> list[tuple[str, str]]:
    return [(span.kind, span.text) for span in detect(text)]


def with_id_check(first17: str) -> str:
    """An ID number completed with its GB 11643-1999 check character, computed independently of
    the module: sum of digit * (2^(17-i) mod 11), then (12 - sum mod 11) mod 11, 10 -> X."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    check = (12 - total % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


def with_luhn_digit(body: str) -> str:
    """`body` plus the Luhn check digit, computed here rather than by the module."""
    for digit in "0123456789":
        digits = [int(c) for c in body + digit]
        total = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
        if total % 10 == 0:
            return body + digit
    raise AssertionError("unreachable")


# --- ID cards ----------------------------------------------------------------------------------


def test_well_known_example_id_is_found_with_upper_and_lower_x():
    assert kinds_and_texts("身份证号11010519491231002X") == [(ID_CARD, "11010519491231002X")]
    assert kinds_and_texts("id: 11010519491231002x.") == [(ID_CARD, "11010519491231002x")]


def test_check_character_matches_the_standard():
    assert id_check_character("11010519491231002") == "X"
    assert with_id_check("11010519491231002") == "11010519491231002X"


@pytest.mark.parametrize("first17", ["44030519900101123", "31011519851231456", "51010720000229001"])
def test_computed_valid_ids_are_found(first17):
    number = with_id_check(first17)
    assert kinds_and_texts(f"我的身份证 {number} 请核对") == [(ID_CARD, number)]


def test_wrong_check_character_is_not_an_id():
    good = with_id_check("44030519900101123")
    bad = good[:-1] + ("1" if good[-1] != "1" else "2")
    assert all(span.kind != ID_CARD for span in detect(bad))


@pytest.mark.parametrize(
    "first17",
    [
        "44030519901301123",  # month 13
        "44030519900230123",  # 30 February
        "44030518990101123",  # born before 1900
        "44030521000101123",  # born in the future
        "00030519900101123",  # no such province
    ],
)
def test_implausible_ids_are_not_ids_even_with_a_right_check_character(first17):
    assert all(span.kind != ID_CARD for span in detect(with_id_check(first17)))


def test_legacy_15_digit_id_with_a_real_date():
    assert kinds_and_texts("旧身份证 110105491231002 ") == [(ID_CARD, "110105491231002")]
    assert detect("110105491331002") == []  # month 13


def test_id_that_also_passes_luhn_is_an_id_not_a_card():
    number = next(
        n
        for n in (with_id_check(f"440305199001011{seq:02d}") for seq in range(100))
        if n[-1] != "X" and luhn_valid(n)
    )
    assert kinds_and_texts(number) == [(ID_CARD, number)]


def test_id_shaped_number_with_wrong_check_but_valid_luhn_is_a_card():
    good = with_id_check("44030519900101123")
    body = good[:-1]
    number = with_luhn_digit(body)
    if number == good:  # both checks agree on this digit: use another base
        body = "44030519900101124"
        number = with_luhn_digit(body)
    assert number != with_id_check(body)
    assert kinds_and_texts(number) == [(BANK_CARD, number)]


# --- Bank cards --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "3782 822463 10005"]
)
def test_luhn_valid_cards_are_found(card):
    assert kinds_and_texts(f"card {card} thanks") == [(BANK_CARD, card)]


def test_luhn_invalid_card_is_not_flagged():
    assert detect("card 4111 1111 1111 1112") == []
    assert detect("4111111111111112") == []


def test_nineteen_digit_unionpay_with_computed_check_digit():
    number = with_luhn_digit("622202020000000000")
    grouped = f"{number[:4]} {number[4:8]} {number[8:12]} {number[12:16]} {number[16:]}"
    assert kinds_and_texts(f"银行卡号：{grouped}。") == [(BANK_CARD, grouped)]
    wrong = grouped[:-1] + str((int(grouped[-1]) + 1) % 10)
    assert detect(f"银行卡号：{wrong}。") == []


def test_millisecond_timestamp_is_not_a_card():
    stamp = with_luhn_digit("173208360000")  # 13 digits starting with 1
    assert detect(f"ts={stamp} ") == []


# --- Phones ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-13800138000",
        "8613800138000",
        "0086 13800138000",
        "(415) 555-0100",
        "415-555-0100",
        "+1 415 555 0100",
        "+1 (415) 555-0100",
        "+44 20 7946 0958",
        "010-12345678",
        "0755-1234567",
        "(021) 61234567",
    ],
)
def test_phones_in_both_languages(phone):
    assert kinds_and_texts(f"请打 {phone} 联系我") == [(PHONE, phone)]
    assert kinds_and_texts(f"Call me at {phone}, thanks") == [(PHONE, phone)]


def test_phone_directly_after_chinese_characters():
    assert kinds_and_texts("手机13800138000谢谢") == [(PHONE, "13800138000")]


@pytest.mark.parametrize(
    "text",
    [
        "订单号 LM2026112001 还没发货",
        "order LM13800138000 status",
        "2026-11-20 下的单",
        "付了¥199.00，另一单1,299元",
        "$1,299.00 on 2026/11/20",
        "第3号订单，数量12件",
        "138001380001",  # a 12-digit run is not a mobile
        "客服热线 400-820-8820",
        "12:30 到 14:00",
    ],
)
def test_order_numbers_dates_amounts_and_short_numbers_are_not_pii(text):
    assert detect(text) == []
    assert not contains_pii(text)


# --- E-mail ------------------------------------------------------------------------------------


def test_emails_including_full_width_at_sign():
    text = "邮箱 zhang.san＠example．com 或 bob+cs@mail.example.co.uk。"
    assert kinds_and_texts(text) == [
        (EMAIL, "zhang.san＠example．com"),
        (EMAIL, "bob+cs@mail.example.co.uk"),
    ]


def test_not_an_email():
    assert detect("follow @support on weibo, or see example.com") == []


def test_email_wins_over_the_phone_inside_it():
    assert kinds_and_texts("13800138000@163.com") == [(EMAIL, "13800138000@163.com")]


# --- IP addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "192.168.1.1",
        "8.8.8.8",
        "2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ],
)
def test_valid_ips(address):
    assert kinds_and_texts(f"来自 {address} 的请求") == [(IP, address)]


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "1.2.3",
        "version 1.2.3.4.5",
        "v1.2.3.4",
        "版本 1.2.3.4",
        "192.168.01.1",
        "at 10:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::vector",
        "a::b",  # valid IPv6, but too short to tell from text
        "::1",
    ],
)
def test_invalid_ips(text):
    assert all(span.kind != IP for span in detect(text))


def test_ipv4_mapped_ipv6_is_one_span():
    assert kinds_and_texts("IP:::ffff:192.168.0.1 down") == [(IP, "::ffff:192.168.0.1")]
    assert kinds_and_texts("IP:2001:db8::1") == [(IP, "2001:db8::1")]


# --- Addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("上海市浦东新区世纪大道100号", "上海市浦东新区世纪大道100号"),
        (
            "寄到北京市朝阳区建国路88号SOHO现代城3号楼1201室，谢谢",
            "北京市朝阳区建国路88号SOHO现代城3号楼1201室",
        ),
        ("我住在深圳市南山区科技南十二路2号", "深圳市南山区科技南十二路2号"),
        ("地址：广东省深圳市南山区高新南七道16号2栋", "广东省深圳市南山区高新南七道16号2栋"),
        ("麻烦问一下上海市徐汇区漕溪北路123弄4号", "上海市徐汇区漕溪北路123弄4号"),
        ("221B Baker Street, London NW1 6XE", "221B Baker Street, London NW1 6XE"),
        (
            "Ship to 1600 Amphitheatre Parkway, Mountain View, CA 94043 please",
            "1600 Amphitheatre Parkway, Mountain View, CA 94043",
        ),
        ("I live at 742 Evergreen Terrace.", "742 Evergreen Terrace"),
        ("Deliver to 350 5th Avenue, Suite 200 today", "350 5th Avenue, Suite 200"),
        ("12 Main St, Apt 4B", "12 Main St, Apt 4B"),
    ],
)
def test_addresses(text, address):
    assert kinds_and_texts(text) == [(ADDRESS, address)]


@pytest.mark.parametrize(
    "text",
    [
        "I ordered 3 items on Main page",
        "第3号订单还没到",
        "我在市区的人民路3号店买的",  # no place name before 市
        "上海市浦东新区世纪大道",  # no house number
        "我知道了，3号发货",
        "We have 2 options on the Way forward",
        "Rated 5 stars, great Street Fighter game",
        "北京市朝阳区的门店",
    ],
)
def test_ordinary_support_text_is_not_an_address(text):
    assert all(span.kind != ADDRESS for span in detect(text))


# --- Redaction, offsets, overlaps -------------------------------------------------------------


def test_redact_chinese_text_uses_ascii_placeholders():
    text = "我是张三，手机138-0013-8000，邮箱 zs@example.com，身份证11010519491231002X。"
    redacted, spans = redact(text)
    assert redacted == "我是张三，手机[PHONE]，邮箱 [EMAIL]，身份证[ID_CARD]。"
    assert [s.kind for s in spans] == [PHONE, EMAIL, ID_CARD]


def test_redact_english_text():
    text = "Card 4111 1111 1111 1111, IP 10.0.0.7, home 221B Baker Street."
    redacted, _ = redact(text)
    assert redacted == "Card [BANK_CARD], IP [IP], home [ADDRESS]."


def test_redact_only_some_kinds():
    text = "call +1 415 555 0100 or mail a.b@example.org"
    redacted, spans = redact(text, kinds=frozenset({EMAIL}))
    assert redacted == "call +1 415 555 0100 or mail [EMAIL]"
    assert spans == [PiiSpan(EMAIL, 29, 44, "a.b@example.org")]


def test_redact_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="passport"):
        redact("x", kinds=frozenset({"passport"}))


def test_redact_without_pii_returns_text_unchanged():
    assert redact("你好，我想退货") == ("你好，我想退货", [])
    assert detect("") == []


def test_offsets_map_back_to_the_original_text_with_full_width_characters():
    text = (
        "ＩＰ是１９２．１６８．１．１，电话＋８６ １３８００１３８０００，邮箱ｂｏｂ＠ｑｑ．ｃｏｍ"
    )
    spans = detect(text)
    assert [s.kind for s in spans] == [IP, PHONE, EMAIL]
    for span in spans:
        assert text[span.start : span.end] == span.text
    assert redact(text)[0] == "ＩＰ是[IP]，电话[PHONE]，邮箱[EMAIL]"


def test_spans_are_ordered_and_disjoint():
    text = (
        "Tel 13800138000, card 4111111111111111, ID 11010519491231002X, "
        "北京市朝阳区建国路88号, 8.8.8.8, x@y.io"
    )
    spans = detect(text)
    assert len(spans) == 6
    for first, second in itertools.pairwise(spans):
        assert first.end <= second.start
    assert all(text[s.start : s.end] == s.text for s in spans)


def test_speed_on_a_long_mixed_text():
    chunk = (
        "您好，我的订单LM2026112001在2026-11-20付了¥199.00，还没到。请寄到上海市浦东新区世纪大道"
        "100号，电话138 0013 8000。Hi, my email is bob@example.com and I live at 221B Baker "
        "Street. Order 3 items on Main page, total $1,299.00, IP 192.168.1.1. "
    )
    text = (chunk * (2000 // len(chunk) + 1))[:2000]
    assert len(detect(text)) > 10
    started = time.perf_counter()
    for _ in range(50):
        detect(text)
    average = (time.perf_counter() - started) / 50
    assert average < 0.02, f"{average * 1000:.1f} ms per detect()"


def test_remove_deletes_personal_data_and_tidies_spacing() -> None:
    assert pii.remove("How much is shipping? a.b@example.com") == "How much is shipping?"
    assert pii.remove("我的手机 13812345678 收不到验证码") == "我的手机 收不到验证码"
    assert pii.remove("怎么退货") == "怎么退货"
