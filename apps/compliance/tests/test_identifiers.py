"""Finding an e-mail address or a phone number in what customers wrote."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.compliance.identifiers import mentions, normalise

PHONE = normalise("phone", "+86 138-0013-8000")
EMAIL = normalise("email", "Wang.Fang@Example.com")


@pytest.mark.parametrize(
    "text",
    [
        "我的手机 13800138000",
        "call me on 138 0013 8000 please",
        "电话：+86 138-0013-8000",
        "0086 13800138000",
        "手机１３８００１３８０００",  # full-width digits
    ],
)
def test_phone_written_in_many_ways_is_found(text: str) -> None:
    assert PHONE == "8613800138000"
    assert mentions(text, "phone", PHONE)
    assert mentions(text, "phone", normalise("phone", "13800138000"))


@pytest.mark.parametrize(
    "text",
    [
        "订单 LM2026112001",
        "流水号 123413800138000",  # a longer digit run that ends with it
        "13800138001",
        "卡号 6222 0213 8001 3800 0",
    ],
)
def test_other_numbers_are_not_the_phone(text: str) -> None:
    assert not mentions(text, "phone", normalise("phone", "13800138000"))


def test_email_matches_whole_addresses_only() -> None:
    assert mentions("邮箱 wang.fang@example.com。", "email", EMAIL)
    assert mentions("WANG.FANG＠EXAMPLE.COM", "email", EMAIL)
    assert not mentions("xwang.fang@example.com", "email", EMAIL)
    assert not mentions("wang.fang@example.com.cn", "email", EMAIL)


def test_identifiers_are_validated() -> None:
    with pytest.raises(ValidationError):
        normalise("email", "not-an-address")
    with pytest.raises(ValidationError):
        normalise("phone", "12345")
    with pytest.raises(ValidationError):
        normalise("channel_id", "   ")
