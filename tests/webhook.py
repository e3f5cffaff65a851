"""A real HTTP webhook receiver on loopback, scripted per path, for notification tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    idempotency_key: str


@dataclass
class WebhookServer:
    """Answers POSTs from a script: ``{path: [status, status, ...]}`` (then 200s)."""

    script: dict[str, list[int]] = field(default_factory=dict)
    retry_after: str = "1"
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> WebhookServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(path, json.loads(body), headers.get("idempotency-key", "")))
            statuses = self.script.get(path, [])
            status = statuses.pop(0) if statuses else 200
            extra = f"Retry-After: {self.retry_after}\r\n" if status == 429 else ""
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()

    def events(self, path: str) -> list[str]:
        return [r.body["event"] for r in self.received if r.path == path]
