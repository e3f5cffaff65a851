"""The OpenAI chat adapter's pure parts: parsing replies, strict schemas, error mapping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from refunds.contracts import RefundProposal

from activities.llm.openai_chat import (
    ReplyNotJson,
    build_request,
    extract_json,
    http_failure,
    strict_schema,
)


@pytest.mark.parametrize(
    "content",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```',
        'Sure! Here you go: {"a": 1} Anything else?',
        '```\n{"a": 1}\n```\ntrailing words',
    ],
)
def test_extract_json_tolerates_fences_and_prose(content: str) -> None:
    assert extract_json(content) == {"a": 1}


@pytest.mark.parametrize("content", ["no json here", '{"a": ', "```json\n{oops}\n```"])
def test_extract_json_refuses_what_is_not_json(content: str) -> None:
    with pytest.raises(ReplyNotJson):
        extract_json(content)


def test_strict_schema_closes_objects_and_requires_every_property() -> None:
    schema = strict_schema(RefundProposal.model_json_schema())
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"])
    assert "default" not in str(schema)


def test_request_modes() -> None:
    args: dict[str, Any] = {"model": "m", "messages": [], "schema": {"type": "object"}, "schema_name": "X",
            "temperature": 0.0, "max_tokens": 10}  # fmt: skip
    assert build_request(mode="json_schema", **args)["response_format"]["type"] == "json_schema"
    assert build_request(mode="json_object", **args)["response_format"] == {"type": "json_object"}
    assert "response_format" not in build_request(mode="prompt", **args)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (503, True),
    ],
)
def test_http_status_maps_to_retryability(status: int, retryable: bool) -> None:
    response = httpx.Response(status, headers={"Retry-After": "7"}, text="key sk-123 is bad")
    error = http_failure(response, secret="sk-123")
    assert error.non_retryable is (not retryable)
    assert "sk-123" not in error.message
    if status == 429:
        assert error.next_retry_delay == timedelta(seconds=7)
