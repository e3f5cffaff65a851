"""A scripted OpenAI-compatible server, for tests and the offline demo. Not a model.

``baton fake-llm --script FILE`` answers ``POST /v1/chat/completions`` on
loopback from a script, so tests and the demo exercise the real HTTP path
(httpx, the adapter, retries, parsing, validation) without a real model::

    usage: {prompt_tokens: 100, completion_tokens: 30}   # per reply, unless a reply says
    reject_response_format: false      # true: 400 on json_schema, like servers without it
    agents:                            # replies per agent, in order; the last one repeats
      drafter:
        - status: 429                  # then a retryable error with Retry-After
          retry_after: 1
        - fenced: {order_id: ORD-1001, amount: 20.0, ...}   # JSON in a ```json fence
        - prose: {...}                 # JSON inside a sentence
        - json: {...}                  # plain JSON
        - raw: "{not json"             # malformed
        - status: 500
        - delay: 0.5                   # seconds before answering
          json: {...}
        - json: {...}                  # with a Set-Cookie header, as a gateway might send
          set_cookie: "route=a1"
      single:                          # one reply per case, filled from what the prompt shows
        - template: {order_id: "{case.order_id}", amount: "{case.requested_amount}",
                     message: "Refunding {case.requested_amount} to {handoffs.intake.customer_name}."}
          usage: {prompt_tokens: 900, completion_tokens: 80}

The agent is read from the system message Baton sends ("You are the 'drafter' agent").

A ``template`` reply is a JSON object whose strings may hold ``{case.FIELD}`` and
``{handoffs.STEP.FIELD}`` placeholders (``FIELD`` may be a dotted path into nested objects).
They are read from the request's first user message, which is the agent's rendered prompt:
Baton fills ``$case`` and ``$<step>`` with the JSON of the case and of that step's handoff,
and nothing else in the message says which JSON is which, so the prompt must label them.
``{case.…}`` reads the first JSON object after a line that starts with ``Case:`` and
``{handoffs.STEP.…}`` the first after a line that starts with ``STEP:`` (the label is
matched ignoring case), so a prompt written for a templated reply says::

    Case: $case
    Intake: $intake

A placeholder that is the whole string keeps the value's JSON type (``"{case.requested_amount}"``
answers the number 42.5); one inside a longer string is written as text. A placeholder whose
value cannot be found (no labelled block, no such field) makes the reply a 500 naming it: this
is a test double, and a loud failure beats a plausible wrong answer.
``GET /v1/fake/stats`` reports connections accepted and requests answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton.contracts import validation_problems
from baton.errors import BatonUsageError

AGENT = re.compile(r"You are the '([\w-]+)' agent")
PLACEHOLDER = re.compile(r"\{(\w+(?:\.[\w-]+)+)\}")
"""``{case.order_id}``, ``{handoffs.intake.customer_name}``: a dotted path in braces."""


class TemplateError(Exception):
    """A template placeholder that cannot be filled from the request (answered as a 500)."""


def labelled_json(text: str, label: str) -> Any:
    """The first JSON object after a line starting ``label:`` (any case) in ``text``.

    Raises:
        TemplateError: no such line, or no JSON object after it.
    """
    marker = re.search(rf"^[ \t]*{re.escape(label)}[ \t]*:", text, re.IGNORECASE | re.MULTILINE)
    if marker is None:
        raise TemplateError(f"the prompt has no line starting {label.capitalize()!r}: to read from")
    start = text.find("{", marker.end())
    try:
        if start < 0:
            raise ValueError
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        raise TemplateError(f"no JSON object after the prompt's {label.capitalize()!r}: line") from None
    return value


def placeholder_source(path: str) -> tuple[str, list[str]]:
    """``case.order_id`` → ``("case", ["order_id"])``; ``handoffs.intake.x`` → ``("intake", ["x"])``.

    Raises:
        TemplateError: the path starts with neither ``case.`` nor ``handoffs.STEP.``.
    """
    root, *rest = path.split(".")
    if root == "case":
        return "case", rest
    if root == "handoffs" and len(rest) >= 2:
        return rest[0], rest[1:]
    raise TemplateError(f"unknown placeholder {{{path}}}: use {{case.FIELD}} or {{handoffs.STEP.FIELD}}")


def fill_template(template: Any, prompt: str) -> Any:
    """``template`` with every placeholder filled from the JSON the labelled blocks of ``prompt`` hold.

    Raises:
        TemplateError: a placeholder names a root other than ``case``/``handoffs``, a block the
            prompt lacks, or a field its JSON lacks.
    """
    blocks: dict[str, Any] = {}

    def value(path: str) -> Any:
        label, fields = placeholder_source(path)
        if label not in blocks:
            blocks[label] = labelled_json(prompt, label)
        found = blocks[label]
        for name in fields:
            if not isinstance(found, dict) or name not in found:
                raise TemplateError(f"unknown placeholder {{{path}}}: the {label} JSON has no {name!r}")
            found = found[name]
        return found

    def fill(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: fill(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [fill(inner) for inner in item]
        if not isinstance(item, str):
            return item
        whole = PLACEHOLDER.fullmatch(item)
        if whole:
            return value(whole.group(1))
        return PLACEHOLDER.sub(lambda m: _text(value(m.group(1))), item)

    return fill(template)


def _text(value: Any) -> str:
    """A filled value inside a longer string: a string as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class FakeReply(BaseModel):
    """One scripted answer."""

    model_config = ConfigDict(extra="forbid")

    status: int = 200
    retry_after: float | None = None
    delay: float = Field(default=0.0, ge=0.0, le=600.0)
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    fenced: dict[str, Any] | None = None
    prose: dict[str, Any] | None = None
    raw: str | None = None
    template: dict[str, Any] | None = None  # plain JSON filled from the request (module docstring)
    usage: dict[str, int] | None = None
    set_cookie: str | None = None  # a Set-Cookie header on this reply, as a gateway might send

    @model_validator(mode="after")
    def _one_body(self) -> FakeReply:
        bodies = [b for b in (self.json_, self.fenced, self.prose, self.raw, self.template) if b is not None]
        if self.status == 200 and len(bodies) != 1:
            raise ValueError("a 200 reply needs exactly one of json, fenced, prose, raw, template")
        if self.template is not None:
            try:
                for path in PLACEHOLDER.findall(json.dumps(self.template)):
                    placeholder_source(path)
            except TemplateError as exc:
                raise ValueError(f"template: {exc}") from None
        return self

    def content(self, prompt: str = "") -> str:
        """The assistant message content this reply sends; ``prompt`` fills a template.

        Raises:
            TemplateError: a template placeholder ``prompt`` cannot fill.
        """
        if self.template is not None:
            return json.dumps(fill_template(self.template, prompt))
        if self.json_ is not None:
            return json.dumps(self.json_)
        if self.fenced is not None:
            return "```json\n" + json.dumps(self.fenced, indent=2) + "\n```"
        if self.prose is not None:
            return "Sure! Here is the result: " + json.dumps(self.prose) + " Let me know if you need more."
        return self.raw or ""


class FakeScript(BaseModel):
    """A whole script."""

    model_config = ConfigDict(extra="forbid")

    agents: dict[str, list[FakeReply]] = Field(default_factory=dict)
    usage: dict[str, int] = Field(default_factory=lambda: {"prompt_tokens": 100, "completion_tokens": 30})
    reject_response_format: bool = False

    @classmethod
    def load(cls, path: str | Path) -> FakeScript:
        """Read a script file, naming the field of any problem."""
        try:
            return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise BatonUsageError(f"{path}: {exc.strerror}") from None
        except (yaml.YAMLError, ValidationError) as exc:
            detail = "; ".join(validation_problems(exc)) if isinstance(exc, ValidationError) else str(exc)
            raise BatonUsageError(f"{path}: {detail}") from None


@dataclass
class Seen:
    """A request the server answered (for tests): agent, body, whether a key or cookie came with it."""

    agent: str
    body: dict[str, Any]
    authorization: str
    at: float
    cookie: str = ""


@dataclass
class FakeLlmServer:
    """The scripted server; ``async with`` starts it on ``host:port`` (0 = any free port)."""

    script: FakeScript
    host: str = "127.0.0.1"
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    _cursor: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, what a provider's base URL should be."""
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def start(self) -> None:
        """Listen on loopback only: this is a test double, never a service."""
        if not ipaddress.ip_address(self.host).is_loopback:
            raise BatonUsageError(f"fake-llm listens on loopback only, not {self.host}")
        self._server = await asyncio.start_server(self._connection, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> FakeLlmServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def next_reply(self, agent: str) -> FakeReply:
        """The agent's next scripted reply (the last one repeats)."""
        replies = self.script.agents.get(agent) or self.script.agents.get("default")
        if not replies:
            return FakeReply(status=404, raw=f"no script for agent {agent!r}")
        index = self._cursor.get(agent, 0)
        self._cursor[agent] = index + 1
        return replies[min(index, len(replies) - 1)]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:  # keep-alive: one connection serves many requests
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._answer(lines[0], headers, body)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n{extra}\r\n".encode()
                    + data
                )
                await writer.drain()
        finally:
            writer.close()

    async def _answer(
        self, request_line: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, Any]]:
        if request_line.startswith("GET ") and "/fake/stats" in request_line:
            return 200, "", {"connections": self.connections, "requests": len(self.seen)}
        if not request_line.startswith("POST ") or "/chat/completions" not in request_line:
            return 404, "", {"error": {"message": "only POST /v1/chat/completions is scripted"}}
        request = json.loads(body or b"{}")
        system = next((m["content"] for m in request.get("messages", []) if m.get("role") == "system"), "")
        found = AGENT.search(system)
        agent = found.group(1) if found else "default"
        key, cookie = headers.get("authorization", ""), headers.get("cookie", "")
        self.seen.append(Seen(agent, request, key, time.monotonic(), cookie))
        wants_schema = (request.get("response_format") or {}).get("type") == "json_schema"
        if self.script.reject_response_format and wants_schema:
            return 400, "", {"error": {"message": "response_format json_schema is not supported"}}
        reply = self.next_reply(agent)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            extra = f"Retry-After: {reply.retry_after:g}\r\n" if reply.retry_after is not None else ""
            return reply.status, extra, {"error": {"message": reply.raw or f"scripted {reply.status}"}}
        prompt = next((m["content"] for m in request.get("messages", []) if m.get("role") == "user"), "")
        try:
            content = reply.content(str(prompt))
        except TemplateError as exc:
            return 500, "", {"error": {"message": f"fake-llm template for agent {agent!r}: {exc}"}}
        usage = reply.usage or self.script.usage
        cookie = f"Set-Cookie: {reply.set_cookie}\r\n" if reply.set_cookie else ""
        return 200, cookie, {
            "id": f"chatcmpl-{len(self.seen)}",
            "object": "chat.completion",
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {**usage, "total_tokens": sum(usage.values())},
        }  # fmt: skip
