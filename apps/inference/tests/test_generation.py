"""Generated answers through the whole message path: the engine asks the pool (real fake
servers over HTTP), checks grounding, and falls back to the extractive answer when it must."""

from __future__ import annotations

from typing import Any

import pytest

from apps.conversations.models import Conversation
from apps.conversations.tests.conftest import say
from apps.inference import services
from apps.inference.fake_server import FakeLLMServer
from apps.inference.models import GenerationStatus, ModelEndpoint, PromptConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(llm: FakeLLMServer) -> ModelEndpoint:
    return services.endpoint_save(
        name="gpu-0", base_url=llm.base_url, model="fake-llm", api_key="sk-secret-1"
    )


def last_prompt(server: FakeLLMServer) -> str:
    chats = [r for r in server.requests if r["_path"].endswith("/chat/completions")]
    return "\n".join(m["content"] for m in chats[-1]["messages"])


def test_generated_answer_cites_sources_and_records_accounting(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == GenerationStatus.GENERATED
    # The fake answers with the first sentences of source [1]: the refund article.
    assert "Once approved, refunds reach Alipay" in reply.text and reply.text.endswith("[1]")
    assert reply.sources[0]["title"] == "How long does a refund take?"
    assert len(reply.sources) == 1  # only what the answer cites
    assert reply.endpoint == "gpu-0"
    assert reply.input_tokens and reply.output_tokens and reply.ttft_ms is not None
    assert reply.grounding_score is not None and reply.grounding_score >= 0.6
    assert reply.grounding_unsupported == []
    assert reply.generation["prompt_version"] == 1 and reply.generation["stream_id"]
    prompt = last_prompt(llm)
    assert "[1] How long does a refund take?" in prompt and "Reply in English." in prompt
    assert "Authorization" not in prompt
    # The endpoint's key travelled as the bearer token and is stored encrypted.
    endpoint.refresh_from_db()
    assert "sk-secret-1" not in endpoint.api_key_encrypted and endpoint.api_key == "sk-secret-1"


def test_prompt_has_instructions_history_and_the_customers_language(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    config = services.prompt_config_save(
        PromptConfig(knowledge_base=conversation.knowledge_base), instructions="Sign as Lumen."
    )
    services.prompt_config_save(config, instructions="Sign as Lumen Mall.")
    say(conversation, "你好")
    reply = say(conversation, "退款多久能到账")[0]
    assert reply.generation_status == GenerationStatus.GENERATED
    assert reply.generation["prompt_version"] == 2
    prompt = last_prompt(llm)
    assert "Sign as Lumen Mall." in prompt and "Simplified Chinese" in prompt
    assert "你好" in prompt  # the earlier turn is in the history


def test_invented_phone_number_is_never_sent_and_the_answer_is_regenerated(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.invent_phone(times=1)
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == GenerationStatus.REGENERATED
    assert "555" not in reply.text
    first = reply.generation["attempts"][0]
    # Caught while streaming (the usual case) or, once in a fresh-clone CI run, only by the
    # check of the finished draft; either way it was the first draft that was turned away.
    rejected = " ".join(first.get("rejected_while_streaming", [])) + first.get("draft", "")
    assert "400-555-0199" in rejected, first
    # The second request carried the stricter instruction.
    assert "does not support" in last_prompt(llm) or "do not support" in last_prompt(llm)


def test_answer_ungrounded_twice_falls_back_to_the_extractive_answer(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.invent_phone()
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == GenerationStatus.UNGROUNDED
    assert reply.text.startswith("Once approved, refunds reach Alipay")
    assert "[1]" not in reply.text and "555" not in reply.text
    assert any("555" in span["text"] for span in reply.grounding_unsupported)
    assert reply.grounding_score is not None and reply.grounding_score < 1
    assert len(reply.generation["attempts"]) == 2


def test_off_topic_generated_answer_is_rejected_by_the_grounding_score(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.configure(
        answer="Our premium members enjoy exclusive lounge access at partner airports worldwide. "
        "Members also receive a complimentary birthday hamper delivered by courier."
    )
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == GenerationStatus.UNGROUNDED
    assert reply.text.startswith("Once approved, refunds reach Alipay")
    assert reply.grounding_score is not None and reply.grounding_score < 0.6
    assert any(span["kind"] == "sentence" for span in reply.grounding_unsupported)


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        ("down", GenerationStatus.UNAVAILABLE),
        ("500", GenerationStatus.UNAVAILABLE),
        ("slow", GenerationStatus.TIMEOUT),
        ("unhealthy", GenerationStatus.UNAVAILABLE),
    ],
)
def test_pool_failure_gives_the_extractive_answer_never_an_error(
    conversation: Conversation,
    endpoint: ModelEndpoint,
    llm: FakeLLMServer,
    failure: str,
    status: str,
) -> None:
    if failure == "down":
        llm.kill()
    elif failure == "500":
        llm.fail_with(500)
    elif failure == "slow":
        services.prompt_config_save(PromptConfig(), first_token_deadline=0.3)
        llm.configure(first_token_delay=2.0)
    else:
        llm.set_health(False)
        services.endpoints_health_check()
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.decision == "answer"
    assert reply.generation_status == status
    assert reply.text.startswith("Once approved, refunds reach Alipay")
    # A fallback is not cached: once the pool is back, the question is generated again.
    if failure == "down":
        return
    llm.recover()
    llm.configure(first_token_delay=0.0)
    llm.set_health(True)
    services.endpoints_health_check()
    from apps.inference import selectors

    selectors.pool_reset()
    again = say(conversation, "How long does a refund take?")[0]
    assert again.generation_status == GenerationStatus.GENERATED and not again.cache_hit


def test_generated_answers_are_cached_unless_personal(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    first = say(conversation, "How long does a refund take?")[0]
    second = say(conversation, "How long does a refund take?")[0]
    assert first.generation_status == GenerationStatus.GENERATED
    assert second.cache_hit == "exact" and second.text == first.text
    assert llm.counts["chat"] == 1


def test_generation_can_be_turned_off_per_knowledge_base(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    services.prompt_config_save(
        PromptConfig(knowledge_base=conversation.knowledge_base), generation_enabled=False
    )
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == "" and llm.counts["chat"] == 0


def test_without_endpoints_answers_are_extractive(conversation: Conversation) -> None:
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == "" and reply.endpoint == ""
    assert reply.text.startswith("Once approved, refunds reach Alipay")


def test_handoff_summary_comes_from_the_pool(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.configure(answer="Customer wants a refund timeline; asked for a person.")
    say(conversation, "How long does a refund take?")
    say(conversation, "I want to talk to a human")
    conversation.refresh_from_db()
    assert conversation.status == "waiting_agent"
    assert conversation.summary == "Customer wants a refund timeline; asked for a person."


def test_handoff_summary_is_extractive_when_the_pool_fails(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    say(conversation, "How long does a refund take?")
    llm.fail_with(500)
    say(conversation, "I want to talk to a human")
    conversation.refresh_from_db()
    assert conversation.summary.startswith("First question: How long does a refund take?")


def test_endpoint_health_check_takes_endpoints_out_and_back(
    endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.set_queue_length(4)
    assert services.endpoints_health_check() == {"gpu-0": True}
    endpoint.refresh_from_db()
    assert endpoint.healthy and endpoint.queue_waiting == 4 and endpoint.health_checked_at

    llm.set_health(False)
    assert services.endpoints_health_check() == {"gpu-0": False}
    endpoint.refresh_from_db()
    assert not endpoint.healthy and "503" in endpoint.health_error

    llm.set_health(True)
    services.endpoint_save(endpoint, model="another-model")
    services.endpoints_health_check()
    endpoint.refresh_from_db()
    assert not endpoint.healthy and "not served" in endpoint.health_error

    services.endpoint_save(endpoint, model="fake-llm")
    services.endpoints_health_check()
    endpoint.refresh_from_db()
    assert endpoint.healthy and endpoint.health_error == ""


def test_endpoints_sync_from_the_environment(settings: Any, llm: FakeLLMServer) -> None:
    settings.INFERENCE = {
        **settings.INFERENCE,
        "ENDPOINTS": f'[{{"name": "vllm-0", "base_url": "{llm.base_url}", "model": "m", '
        '"weight": 2, "timeout": 30}]',
        "API_KEY": "k-1",
    }
    assert services.endpoints_sync_from_env() == ["vllm-0"]
    assert services.endpoints_sync_from_env() == ["vllm-0"]  # safe to run twice
    endpoint = ModelEndpoint.objects.get()
    assert endpoint.weight == 2 and endpoint.request_timeout == 30 and endpoint.api_key == "k-1"
    settings.INFERENCE = {**settings.INFERENCE, "ENDPOINTS": '[{"name": "x"}]'}
    from apps.core.exceptions import ServiceError

    with pytest.raises(ServiceError):
        services.endpoints_sync_from_env()


def test_an_answer_broken_mid_stream_is_written_again(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    llm.close_mid_stream(after_chunks=3, times=1)
    reply = say(conversation, "How long does a refund take?")[0]
    assert reply.generation_status == GenerationStatus.REGENERATED
    assert "Once approved, refunds reach Alipay" in reply.text
    assert reply.generation["attempts"][0]["broken_after_tokens"] is True


def test_personal_data_is_redacted_before_it_reaches_the_model(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer
) -> None:
    first = say(conversation, "退款多久能到账？邮箱 li.lei@example.com")[0]
    assert first.generation_status == GenerationStatus.GENERATED
    # The question travels without it (it is not what the question is about)...
    assert "li.lei@example.com" not in last_prompt(llm) and "退款多久能到账" in last_prompt(llm)
    reply = say(conversation, "运费怎么算")[0]
    assert reply.generation_status == GenerationStatus.GENERATED
    prompt = last_prompt(llm)  # ...and the history holds the stored, redacted text
    assert "li.lei@example.com" not in prompt and "[EMAIL]" in prompt
    # Stored redacted; what the customer wrote is kept only encrypted (for the agent who takes
    # over, audited).
    assert not conversation.messages.filter(text__contains="li.lei@example.com").exists()
    asked = conversation.messages.get(pk=first.reply_to_id)
    assert "[EMAIL]" in asked.text and "li.lei@example.com" in asked.original_text
    from apps.inference.generation import GenerationRequest, SourceText, build_messages

    request = GenerationRequest(
        question="我的手机是13800138000，身份证11010519491231002X",
        language="zh",
        sources=[SourceText(1, "客服电话", "客服热线 400-820-1234")],
        config=PromptConfig(),
        history=[("customer", "寄到上海市浦东新区世纪大道100号")],
        summary="Customer card 4111 1111 1111 1111",
    )
    sent = "\n".join(m["content"] for m in build_messages(request))
    for personal in ("13800138000", "11010519491231002X", "世纪大道100号", "4111 1111 1111 1111"):
        assert personal not in sent
    assert "400-820-1234" in sent  # the help centre's own number is not the customer's data


def test_the_api_requests_audit_row_has_the_models_tokens(
    conversation: Conversation, endpoint: ModelEndpoint, llm: FakeLLMServer, client: Any
) -> None:
    from apps.audit.models import AuditEvent
    from apps.conversations.services import conversation_token

    response = client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": "How long does a refund take?"},
        "application/json",
        HTTP_AUTHORIZATION=f"Conversation {conversation_token(conversation)}",
    )
    assert response.status_code == 201
    reply = conversation.messages.get(public_id=response.json()["replies"][0]["id"])
    assert reply.generation_status == GenerationStatus.GENERATED
    event = AuditEvent.objects.get(request_id=response["X-Request-ID"])
    assert event.input_tokens == reply.input_tokens and event.input_tokens > 0
    assert event.output_tokens == reply.output_tokens and event.output_tokens > 0
