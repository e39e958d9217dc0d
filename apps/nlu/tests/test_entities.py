from datetime import UTC, date, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.nlu.entities import Entity, chinese_number, extract_entities, first

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 23 November 2026, 10:00 in Shanghai: the week runs 23-29 November, the previous one
# 16-22 November.
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)


def found(text: str, now: datetime = NOW) -> list[tuple[str, str]]:
    return [(e.kind, e.value) for e in extract_entities(text, now=now)]


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 10, 0, tzinfo=SHANGHAI)


def test_the_fixed_now_is_a_monday():
    assert NOW.weekday() == 0
    assert NOW.date() == date(2026, 11, 23)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的订单LM2026112001还没发货", [("order_number", "LM2026112001")]),
        ("不对，订单号是 LM2026112001", [("order_number", "LM2026112001")]),
        ("order lm2026112001 hasn't arrived", [("order_number", "LM2026112001")]),
        ("订单 LM 2026-112001 到哪了", [("order_number", "LM2026112001")]),
        ("Order number: LM 2026 1120 01", [("order_number", "LM2026112001")]),
        ("AB12345678 and XY123456789012345", [("order_number", "AB12345678")]),  # 15 digits: no
        ("ab12345678", [("order_number", "AB12345678")]),
        # Full-width letters and digits as typed by a Chinese input method.
        ("订单号ＬＭ２０２６１１２００１", [("order_number", "LM2026112001")]),
        ("订单号：20261120123456", [("order_number", "20261120123456")]),
        ("订单20261120", [("order_number", "20261120")]),
        ("单号是 12345678901", [("order_number", "12345678901")]),
        ("order #12345678", [("order_number", "12345678")]),
        ("order no. 12345678", [("order_number", "12345678")]),
        ("order number is 20261120123", [("order_number", "20261120123")]),
        ("#98765432 还没到", [("order_number", "98765432")]),
        # An order cue right before a mobile-shaped number makes it an order number.
        ("订单号13812345678", [("order_number", "13812345678")]),
        ("order 13812345678", [("order_number", "13812345678")]),
        # Letters glued to a mobile-shaped number: one order number, no phone inside it.
        ("收到LM13812345678了吗", [("order_number", "LM13812345678")]),
        # A complete number is not extended by the next word's digits.
        ("LM2026112001 20件", [("order_number", "LM2026112001")]),
    ],
)
def test_order_numbers(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "20261120123",  # digits without a cue
        "我买了 12345678 个",
        "订单1234567",  # seven digits: too short
        "订单123456789012345678901",  # 21 digits: too long
        "LM1234567",  # 2 letters + 7 digits
        "iPhone 15 Pro",
        "ordered 12345678",  # "ordered" is not the cue "order"
        "it is 20261120",  # an English word, then a space, is not an order prefix
    ],
)
def test_not_order_numbers(text):
    assert [k for k, _ in found(text) if k == "order_number"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的电话是13812345678", [("phone", "13812345678")]),
        ("手机：+86 138 1234 5678", [("phone", "13812345678")]),
        ("+8613812345678", [("phone", "13812345678")]),
        ("0086-138-1234-5678", [("phone", "13812345678")]),
        ("86 13912345678", [("phone", "13912345678")]),
        ("call me at 15912345678 please", [("phone", "15912345678")]),
        ("电话１３８１２３４５６７８", [("phone", "13812345678")]),
        ("tel:199 1234 5678", [("phone", "19912345678")]),
    ],
)
def test_phones(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "12812345678",  # 12x is not a mobile prefix
        "138123456789",  # 12 digits
        "9913812345678",  # inside a longer digit run
        "1381234567",  # 10 digits
    ],
)
def test_not_phones(text):
    assert [k for k, _ in found(text) if k == "phone"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("邮箱 Foo.Bar@Example.COM 谢谢", [("email", "foo.bar@example.com")]),
        ("我的邮箱是abc_123@qq.com。", [("email", "abc_123@qq.com")]),
        ("mail me: a.b+tag@mail.example.co.uk.", [("email", "a.b+tag@mail.example.co.uk")]),
        # An e-mail address is not also an order number.
        ("lm2026112001@163.com", [("email", "lm2026112001@163.com")]),
        ("no address here @ all", []),
        ("user@localhost", []),
    ],
)
def test_emails(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "value", "currency"),
    [
        ("¥199", "199.00", "CNY"),
        ("￥199.5", "199.50", "CNY"),
        ("花了199元", "199.00", "CNY"),
        ("199.50 块", "199.50", "CNY"),
        ("两百块", "200.00", "CNY"),
        ("三百五十元", "350.00", "CNY"),
        ("三百五块", "350.00", "CNY"),
        ("一百零五元", "105.00", "CNY"),
        ("十块钱", "10.00", "CNY"),
        ("三块五", "3.50", "CNY"),
        ("3块5毛", "3.50", "CNY"),
        ("3元5角2分", "3.52", "CNY"),
        ("五毛", "0.50", "CNY"),
        ("两毛五", "0.25", "CNY"),
        ("1.5万元", "15000.00", "CNY"),
        ("两千块", "2000.00", "CNY"),
        ("1,299 yuan", "1299.00", "CNY"),
        ("RMB 300", "300.00", "CNY"),
        ("rmb300", "300.00", "CNY"),
        ("CNY300", "300.00", "CNY"),
        ("人民币500", "500.00", "CNY"),
        ("人民币500元", "500.00", "CNY"),
        ("500人民币", "500.00", "CNY"),
        ("$20", "20.00", "USD"),
        ("US$ 1,234.5", "1234.50", "USD"),
        ("20 dollars", "20.00", "USD"),
        ("20 bucks", "20.00", "USD"),
        ("USD 15.5", "15.50", "USD"),
        ("15.5 USD", "15.50", "USD"),
        ("20美元", "20.00", "USD"),
        ("$1.5k", "1500.00", "USD"),
        ("退１９９元", "199.00", "CNY"),
    ],
)
def test_amounts(text, value, currency):
    amounts = [e for e in extract_entities(text, now=NOW) if e.kind == "amount"]
    assert [(e.value, e.currency) for e in amounts] == [(value, currency)]


@pytest.mark.parametrize(
    "text",
    [
        "我买了3件",
        "I paid 199 for it",
        "100",
        "我们一块儿去",  # 块儿: "together"
        "一块蛋糕",  # 块 as the measure word
        "两块手表",
        "画一个三角形",
        "元旦发货吗",
        "单元测试",
        "数量3，共5件",
    ],
)
def test_not_amounts(text):
    assert [k for k, _ in found(text) if k == "amount"] == []


def test_full_width_comma_is_not_a_thousands_separator():
    assert found("买3件，199元") == [("amount", "199.00")]
    assert found("1,299元") == [("amount", "1299.00")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Absolute dates.
        ("2026-11-20", "2026-11-20"),
        ("2026/11/20", "2026-11-20"),
        ("2026.11.20", "2026-11-20"),
        ("11/20", "2026-11-20"),
        ("11/20/2026", "2026-11-20"),
        ("2026年11月20日", "2026-11-20"),
        ("2026 年 11 月 20 日", "2026-11-20"),
        ("11月20日", "2026-11-20"),
        ("11月20号", "2026-11-20"),
        ("11月20", "2026-11-20"),
        ("十一月二十日", "2026-11-20"),
        ("20号", "2026-11-20"),
        ("二十号", "2026-11-20"),
        ("5号发的货", "2026-11-05"),
        ("上个月20号", "2026-10-20"),
        ("这个月5号", "2026-11-05"),
        ("去年11月20日", "2025-11-20"),
        ("Nov 20", "2026-11-20"),
        ("Nov. 20, 2026", "2026-11-20"),
        ("November 20th", "2026-11-20"),
        ("20 November 2026", "2026-11-20"),
        ("the 20th of November", "2026-11-20"),
        ("May 5", "2026-05-05"),
        # Relative days.
        ("今天", "2026-11-23"),
        ("明天", "2026-11-24"),
        ("后天", "2026-11-25"),
        ("大后天", "2026-11-26"),
        ("昨天", "2026-11-22"),
        ("前天", "2026-11-21"),
        ("大前天", "2026-11-20"),
        ("昨晚下的单", "2026-11-22"),
        ("3天前", "2026-11-20"),
        ("三天前", "2026-11-20"),
        ("两天后", "2026-11-25"),
        ("十天之前", "2026-11-13"),
        ("一周前", "2026-11-16"),
        ("两个星期后", "2026-12-07"),
        ("三个月前", "2026-08-23"),
        ("yesterday", "2026-11-22"),
        ("today", "2026-11-23"),
        ("tomorrow", "2026-11-24"),
        ("the day before yesterday", "2026-11-21"),
        ("the day after tomorrow", "2026-11-25"),
        ("2 days ago", "2026-11-21"),
        ("two days ago", "2026-11-21"),
        ("a couple of days ago", "2026-11-21"),
        ("in 3 days", "2026-11-26"),
        ("three days later", "2026-11-26"),
        ("a week ago", "2026-11-16"),
        ("a month ago", "2026-10-23"),
        # Weeks: Monday to Sunday; "last"/"上" is the previous calendar week.
        ("上周五", "2026-11-20"),
        ("上星期五", "2026-11-20"),
        ("上礼拜五", "2026-11-20"),
        ("上个星期天", "2026-11-22"),
        ("上上周五", "2026-11-13"),
        ("这周三", "2026-11-25"),
        ("本周三", "2026-11-25"),
        ("这个星期三", "2026-11-25"),
        ("周三", "2026-11-25"),
        ("星期日", "2026-11-29"),
        ("下周一", "2026-11-30"),
        ("下个礼拜一", "2026-11-30"),
        ("上周", "2026-11-16"),
        ("下周", "2026-11-30"),
        ("上周末", "2026-11-21"),
        ("last Friday", "2026-11-20"),
        ("last fri", "2026-11-20"),
        ("this Friday", "2026-11-27"),
        ("Friday", "2026-11-27"),
        ("next Monday", "2026-11-30"),
        ("last week", "2026-11-16"),
        ("this week", "2026-11-23"),
        ("next week", "2026-11-30"),
        ("last weekend", "2026-11-21"),
    ],
)
def test_dates(text, expected):
    assert found(text) == [("date", expected)]


@pytest.mark.parametrize(
    "text",
    [
        "一周三次",  # three times a week
        "每周一发货",  # a habit, not a day
        "然后天天催",  # 然后 + 天天, not 后天
        "之前天天打电话",
        "坐3号线",
        "7日内退货",
        "24/7 support",
        "13/45",
        "2月30日",  # no such day
        "you may 5 times",  # the verb, not the month
        "on sat",  # abbreviations only after last/this/next
        "这周围",
        "20261120",
    ],
)
def test_not_dates(text):
    assert [k for k, _ in found(text) if k == "date"] == []


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (at(2026, 11, 27), "2026-11-20"),  # on a Friday: a week ago, not today
        (at(2026, 11, 23), "2026-11-20"),  # on a Monday: three days ago
        (at(2026, 11, 29), "2026-11-20"),  # on a Sunday: the previous week's, nine days ago
        (at(2026, 11, 28), "2026-11-20"),  # on a Saturday: not yesterday
    ],
)
def test_last_friday_is_the_previous_calendar_weeks(today, expected):
    assert found("last Friday", now=today) == [("date", expected)]
    assert found("上周五", now=today) == [("date", expected)]


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (at(2026, 11, 27), "2026-11-27"),  # on the Friday itself
        (at(2026, 11, 29), "2026-11-27"),  # on Sunday: this week's Friday is in the past
    ],
)
def test_this_friday_is_the_current_weeks(today, expected):
    assert found("this Friday", now=today) == [("date", expected)]
    assert found("这周五", now=today) == [("date", expected)]
    assert found("周五", now=today) == [("date", expected)]


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("昨天", at(2027, 1, 1), "2026-12-31"),
        ("明天", at(2026, 12, 31), "2027-01-01"),
        ("3天前", at(2026, 3, 2), "2026-02-27"),
        ("上周五", at(2027, 1, 4), "2027-01-01"),  # Monday 4 January 2027
        ("上周五", at(2027, 1, 3), "2026-12-25"),  # Sunday 3 January 2027
        ("下周一", at(2026, 12, 30), "2027-01-04"),
        ("a month ago", at(2026, 3, 31), "2026-02-28"),
        ("一个月后", at(2026, 1, 31), "2026-02-28"),
        # Month and day without a year: the latest one at most 61 days ahead.
        ("11月20日", at(2027, 1, 5), "2026-11-20"),
        ("12月30日", at(2027, 1, 5), "2026-12-30"),
        ("1月5日", at(2026, 12, 20), "2027-01-05"),
        ("12/20", at(2026, 11, 23), "2026-12-20"),
        ("2月1日", at(2026, 11, 23), "2026-02-01"),  # 70 days ahead: the past one
        ("Jan 22", at(2026, 11, 23), "2027-01-22"),  # 60 days ahead
        ("Jan 24", at(2026, 11, 23), "2026-01-24"),  # 62 days ahead
        ("2月29日", at(2026, 11, 23), "2024-02-29"),  # back to the last leap year
        ("20号", at(2027, 1, 5), "2027-01-20"),  # a day alone: this month's
        ("31号", at(2026, 11, 23), None),  # November has no 31st
        ("上个月30号", at(2027, 1, 5), "2026-12-30"),
        ("下个月5号", at(2026, 12, 20), "2027-01-05"),
    ],
)
def test_dates_near_boundaries(text, today, expected):
    assert found(text, now=today) == ([("date", expected)] if expected else [])


def test_now_is_read_in_local_time():
    # 20:00 UTC on the 22nd is already 04:00 on the 23rd in Shanghai.
    utc_evening = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
    assert found("今天", now=utc_evening) == [("date", "2026-11-23")]


def test_now_defaults_to_the_local_date():
    before = timezone.localdate()
    value = first(extract_entities("today"), "date")
    after = timezone.localdate()
    assert value is not None
    assert value.value in {before.isoformat(), after.isoformat()}


def test_a_mixed_message_keeps_every_entity_in_order_with_its_own_span():
    text = "你好，订单号 LM2026112001，上周五付了 ¥199.00，电话 138-1234-5678，邮箱 Li@Example.com"
    entities = extract_entities(text, now=NOW)
    assert [(e.kind, e.value, e.currency) for e in entities] == [
        ("order_number", "LM2026112001", ""),
        ("date", "2026-11-20", ""),
        ("amount", "199.00", "CNY"),
        ("phone", "13812345678", ""),
        ("email", "li@example.com", ""),
    ]
    for entity in entities:
        assert text[entity.start : entity.end] == entity.text
    assert [e.text for e in entities] == [
        "LM2026112001",
        "上周五",
        "¥199.00",
        "138-1234-5678",
        "Li@Example.com",
    ]


def test_spans_point_into_the_text_as_written():
    text = "订单号ＬＭ２０２６１１２００１，退￥１９９"
    order, amount = extract_entities(text, now=NOW)
    assert order == Entity("order_number", "LM2026112001", "ＬＭ２０２６１１２００１", 3, 15)
    assert amount == Entity("amount", "199.00", "￥１９９", 17, 21, "CNY")


def test_spans_never_overlap():
    text = "订单13812345678 LM13812345678 13812345678元 2026-11-20 lm20261120@qq.com"
    entities = extract_entities(text, now=NOW)
    for left, right in pairwise(entities):
        assert left.end <= right.start
    assert [e.kind for e in entities] == ["order_number", "order_number", "amount", "date", "email"]


def test_first_returns_the_first_of_a_kind_or_none():
    entities = extract_entities("LM2026112001 或 LM2026112002, 昨天", now=NOW)
    order = first(entities, "order_number")
    assert order is not None and order.value == "LM2026112001"
    assert first(entities, "phone") is None
    assert first([], "date") is None


@pytest.mark.parametrize(
    ("numeral", "value"),
    [
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("一百零五", 105),
        ("三百五十", 350),
        ("三百五", 350),
        ("两千三", 2300),
        ("一万五", 15000),
        ("十万", 100000),
        ("二零", None),
        ("万", None),
    ],
)
def test_chinese_number(numeral, value):
    assert chinese_number(numeral) == value
