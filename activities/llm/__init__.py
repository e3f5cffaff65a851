"""The ``baton.llm_agent`` activity: an LLM behind a typed handoff contract.

One shared ``httpx.AsyncClient`` per provider per worker (pooled connections,
explicit timeouts, no retries of its own: Temporal owns retries). The reply is
parsed and validated against the agent's contract here; a reply that still fails
after the bounded repair attempts is a non-retryable ``LlmOutputInvalid`` error,
which the workflow treats as a failed handoff (re-run with feedback, then
escalate). No unvalidated reply ever leaves this activity.

Transport: aiohttp under httpx's API (``httpx-aiohttp``), chosen by measurement
(BENCHMARKS.md); ``BATON_HTTP_TRANSPORT=httpx`` selects httpx's own pool.
"""

from __future__ import annotations

import asyncio
import functools
import http.cookiejar
import json
import os
import string
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from httpx_aiohttp import AiohttpTransport
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm import openai_chat
from activities.llm.providers import Mode, ProviderConfig
from baton.contracts import ContractError, resolve_contract, validation_problems
from baton.messages import AgentInput, LlmCall, LlmResult, Usage

T = TypeVar("T")
TRACER = trace.get_tracer("baton.llm")
FALLBACK: dict[Mode, Mode | None] = {"json_schema": "json_object", "json_object": "prompt", "prompt": None}
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)


def make_transport(kind: str | None = None) -> httpx.AsyncBaseTransport:
    """The HTTP transport for LLM calls (``aiohttp`` by default, or ``httpx``)."""
    kind = kind or os.environ.get("BATON_HTTP_TRANSPORT", "aiohttp")
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(limits=LIMITS, retries=0)
    return AiohttpTransport(limits=LIMITS, retries=0)


class NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing.

    One client per provider serves every case on the worker, so a cookie that one
    reply sets (a gateway's session or affinity cookie) would otherwise ride along
    on every later case's requests: state shared across cases and tenants that no
    audit event shows. LLM APIs authenticate with the API key, never with cookies.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        """Drop it."""

    def extract_cookies(self, response: object, request: object) -> None:
        """Keep nothing from a response."""


def render_prompt(template: str, agent: AgentInput) -> str:
    """Fill ``$case``, ``$feedback`` and ``$<step>`` with the case, feedback and earlier handoffs."""
    values = {"case": json.dumps(agent.case, indent=2, sort_keys=True)}
    values.update({step: json.dumps(out, indent=2, sort_keys=True) for step, out in agent.handoffs.items()})
    values["feedback"] = (
        "\n".join(f"- ({f.source}) {f.message}" for f in agent.feedback) if agent.feedback else "(none)"
    )
    return string.Template(template).safe_substitute(values)


class LlmActivities:
    """LLM agents for every configured provider, sharing one client per provider."""

    def __init__(
        self,
        providers: dict[str, ProviderConfig],
        *,
        transport: Callable[[], httpx.AsyncBaseTransport] = make_transport,
        heartbeat_every: float = 2.0,
    ) -> None:
        self._providers = providers
        self._transport = transport
        self._heartbeat_every = heartbeat_every
        self._clients: dict[str, httpx.AsyncClient] = {}

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        """The providers this worker can call (the wiring check reads their names)."""
        return dict(self._providers)

    def _client(self, name: str, config: ProviderConfig) -> httpx.AsyncClient:
        if name not in self._clients:  # created lazily, inside the worker's event loop
            self._clients[name] = httpx.AsyncClient(
                transport=self._transport(),
                timeout=httpx.Timeout(config.timeout_seconds, connect=10.0),
                follow_redirects=False,
                cookies=NoCookies(),
            )
        return self._clients[name]

    @activity.defn(name="baton.llm_agent")
    async def llm_agent(self, call: LlmCall) -> LlmResult:
        """Ask the model, parse and validate its reply; repair a bad reply a bounded number of times."""
        config = self._providers.get(call.provider)
        if config is None:
            raise ApplicationError(f"unknown LLM provider {call.provider!r}", non_retryable=True)
        try:
            contract = resolve_contract(call.contract)
        except ContractError as exc:
            raise ApplicationError(str(exc), type="ContractError", non_retryable=True) from None
        session = _Session(self._client(call.provider, config), config, call, contract)
        return await self._heartbeating(session.run())

    async def _heartbeating(self, work: Awaitable[T]) -> T:
        """Heartbeat while ``work`` runs, so a cancelled case stops its LLM call."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._heartbeat_every)
                if done:
                    return task.result()
                activity.heartbeat()
        finally:
            task.cancel()

    async def aclose(self) -> None:
        """Close every provider's client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.llm_agent]


@functools.lru_cache(maxsize=256)
def _schemas(contract: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contract's JSON Schema and its strict form, computed once per contract."""
    schema = contract.model_json_schema()
    return schema, openai_chat.strict_schema(schema)


class _Session:
    """One agent run: the conversation, the structured-output mode, the tokens spent."""

    def __init__(
        self, client: httpx.AsyncClient, config: ProviderConfig, call: LlmCall, contract: type[BaseModel]
    ) -> None:
        self.client, self.config, self.call, self.contract = client, config, call, contract
        self.schema, self.strict = _schemas(contract)
        self.mode: Mode = config.structured_output
        self.model = call.model or config.default_model
        self.usage = Usage()
        self.last_usage = Usage()
        self.secret = config.api_key()
        self.messages = [{"role": "user", "content": render_prompt(call.prompt, call.agent)}]

    async def run(self) -> LlmResult:
        problems: list[str] = []
        for _ in range(self.call.repair_attempts + 1):
            content = await self._complete()
            try:
                value = self.contract.model_validate(openai_chat.extract_json(content))
            except openai_chat.ReplyNotJson as exc:
                problems = [str(exc)]
            except ValidationError as exc:
                problems = validation_problems(exc)
            else:
                return LlmResult(output=value.model_dump(mode="json"), usage=self.usage, model=self.model)
            self.messages += [
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": "Your reply did not match the required JSON Schema:\n"
                    + "\n".join(f"- {p}" for p in problems)
                    + "\nReply again with the corrected JSON object only.",
                },
            ]
        raise ApplicationError(
            f"{self.call.agent.agent} reply failed its contract after "
            f"{self.call.repair_attempts} repair attempt(s): " + "; ".join(problems),
            {"usage": self.usage.model_dump()},
            type="LlmOutputInvalid",
            non_retryable=True,
        )

    async def _complete(self) -> str:
        """One chat completion as a GenAI ``chat`` span (names and counts only, no content)."""
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.call.provider,
            "gen_ai.request.model": self.model,
            "gen_ai.agent.name": self.call.agent.agent,
            "baton.case_id": self.call.agent.case_id,
        }
        with TRACER.start_as_current_span(
            f"chat {self.model}", kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                content = await self._exchange()
            except ApplicationError as exc:
                span.set_attribute("error.type", exc.type or "ApplicationError")
                raise
            span.set_attribute("gen_ai.response.model", self.model)
            span.set_attribute("gen_ai.usage.input_tokens", self.last_usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", self.last_usage.output_tokens)
            return content

    async def _exchange(self) -> str:
        """One chat completion; steps down the structured-output mode if the server lacks it."""
        while True:
            body = openai_chat.build_request(
                model=self.model,
                messages=[{"role": "system", "content": self._system()}, *self.messages],
                schema=self.strict if self.mode == "json_schema" else self.schema,
                schema_name=self.contract.__name__,
                mode=self.mode,
                temperature=self.call.temperature,
                max_tokens=self.call.max_tokens,
            )
            headers = {"Authorization": f"Bearer {self.secret}"} if self.secret else {}
            try:
                response = await self.client.post(
                    f"{self.config.resolved_url()}/chat/completions", json=body, headers=headers
                )
            except httpx.TransportError as exc:
                raise openai_chat.transport_failure(exc, secret=self.secret) from None
            lower = FALLBACK[self.mode]
            if openai_chat.mentions_response_format(response) and lower is not None:
                activity.logger.info("provider lacks %s structured output; using %s", self.mode, lower)
                self.mode = lower
                continue
            if response.status_code >= 400:
                raise openai_chat.http_failure(response, secret=self.secret)
            try:
                payload = response.json()
            except ValueError:
                raise ApplicationError("the LLM server's reply is not JSON", type="LlmBadResponse") from None
            content, used_in, used_out, model = openai_chat.reply_content(payload)
            self.last_usage = Usage(input_tokens=used_in, output_tokens=used_out, calls=1)
            self.usage = self.usage + self.last_usage
            self.model = model or self.model
            return content

    def _system(self) -> str:
        agent = self.call.agent
        text = f"You are the '{agent.agent}' agent in the '{agent.process}' process."
        if self.mode == "json_schema":
            return text + " Reply with the JSON object the response format requires."
        return text + " " + openai_chat.schema_instruction(self.schema)
