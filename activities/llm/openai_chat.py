"""The OpenAI chat-completions adapter: the wire format, nothing about who serves it.

Builds requests that ask for structured output (``response_format`` json_schema,
strict; or JSON mode; or the schema in the prompt), turns replies into JSON
(stripping code fences and surrounding prose), and maps HTTP failures onto
Temporal's retry semantics: 408/409/429/5xx and transport errors are retryable
(``Retry-After`` sets the next delay), other 4xx are not. A different wire
format (an Anthropic-style adapter) would sit beside this module.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import timedelta
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.llm.providers import Mode

RETRYABLE_STATUS = {408, 409, 429}
FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


class ReplyNotJson(ValueError):  # noqa: N818 - reads as the condition it names
    """The model's reply holds no JSON object."""


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON Schema made acceptable to strict structured output.

    Strict mode wants every object closed (``additionalProperties: false``) with
    every property required, and no ``default`` keywords.
    """
    result = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("default", None)
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(result)
    return result


def build_request(
    *,
    model: str,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    schema_name: str,
    mode: Mode,
    temperature: float,
    max_tokens: int,
) -> dict[str, Any]:
    """The JSON body of a chat-completions request in the given structured-output mode.

    ``schema`` must already be strict (see :func:`strict_schema`) for ``json_schema`` mode.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def schema_instruction(schema: dict[str, Any]) -> str:
    """The prompt text that carries the schema when the server cannot enforce it."""
    return (
        "Reply with one JSON object only, no prose and no code fences, matching this JSON Schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


def extract_json(content: str) -> Any:
    """The first JSON object in ``content``, tolerating code fences and prose around it."""
    text = content.strip()
    fenced = FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    start = text.find("{")
    if start < 0:
        raise ReplyNotJson("the reply contains no JSON object")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise ReplyNotJson(f"the reply is not valid JSON: {exc.msg} at column {exc.colno}") from None
    return value


def reply_content(body: dict[str, Any]) -> tuple[str, int, int, str]:
    """``(content, input_tokens, output_tokens, model)`` from a chat-completions response."""
    try:
        content = body["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        raise ApplicationError(
            "the server's reply has no choices[0].message.content", type="LlmBadResponse"
        ) from None
    usage = body.get("usage") or {}
    return (
        str(content),
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        str(body.get("model", "")),
    )


def retry_after(response: httpx.Response) -> timedelta | None:
    """The server's ``Retry-After`` (seconds), capped at an hour."""
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return timedelta(seconds=min(max(seconds, 0.0), 3600.0))


def mentions_response_format(response: httpx.Response) -> bool:
    """True when a 4xx says the server does not support the requested ``response_format``."""
    return response.status_code in (400, 422) and "response_format" in response.text


def http_failure(response: httpx.Response, *, secret: str | None) -> ApplicationError:
    """Temporal's view of an HTTP error: retryable or not, never carrying the key."""
    detail = _redact(response.text[:300], secret)
    message = f"LLM server answered {response.status_code}: {detail}"
    if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
        return ApplicationError(message, type="LlmRetryable", next_retry_delay=retry_after(response))
    return ApplicationError(message, type="LlmRequestRefused", non_retryable=True)


def transport_failure(exc: httpx.TransportError, *, secret: str | None) -> ApplicationError:
    """A connection-level failure: retryable."""
    return ApplicationError(
        f"LLM server unreachable: {type(exc).__name__}: {_redact(str(exc), secret)}", type="LlmUnreachable"
    )


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text
