"""A running approval gateway for tests: real uvicorn on loopback, a real worker, signing on.

The gateway signs what it sends with an HMAC key; the worker requires signed decisions,
as a production deployment would. Local accounts live in a copy of the refund app's
roles file with passwords added (hashed once per test session: scrypt is meant to be slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from baton import signing
from baton.client import BatonClient
from baton.gateway.oidc import OidcSettings
from baton.gateway.passwords import hash_password
from baton.gateway.serve import bind, server
from baton.gateway.settings import GatewaySettings
from baton.settings import Settings
from baton.signing import DecisionKeys, SigningPolicy
from tests.conftest import REFUNDS_APP, Running

PASSWORD = "correct horse battery staple"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice Ng", "roles": ["support-lead"]},
    "bob": {"name": "Bob Ortiz", "roles": ["support-agent"]},
    "dana": {"name": "Dana Kim", "roles": ["support-manager"]},
    "carol": {"name": "Carol Diaz", "roles": ["finance"]},
    "erin": {"name": "Erin Walsh", "roles": ["finance", "support-manager"]},
    "olga": {"name": "Olga Berg", "roles": ["auditor"]},
}
_HASH: list[str] = []
SIGNING_KEY = secrets.token_bytes(32)


def accounts_file(directory: Path) -> Path:
    """The refund app's users, each with :data:`PASSWORD`, plus an auditor, in ``directory``."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    users = {uid: {**user, "password": _HASH[0]} for uid, user in USERS.items()}
    path = directory / "roles.yaml"
    path.write_text(yaml.safe_dump({"users": users}, sort_keys=False))
    return path


def gateway_settings(tmp_path: Path) -> Settings:
    """A test's own files and queue, with local accounts (passwords) in the roles file.

    Gateway test modules return this from their ``settings`` fixture, which ``on_dev`` uses.
    """
    return Settings(
        home=tmp_path,
        task_queue=f"test-{uuid.uuid4()}",
        roles_file=accounts_file(tmp_path),
        providers_file=REFUNDS_APP.root / "providers.yaml",
    )


def oidc_settings(idp: Any, url: str, **more: Any) -> OidcSettings:
    """The gateway at ``url`` as a client of the test identity provider, roles from its claim."""
    return OidcSettings(
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        redirect_uri=f"{url}/login/callback",
        roles_claim="roles",
        **more,
    )


@dataclass
class Gateway:
    """A gateway under test: its URL and the Baton client behind it."""

    url: str
    baton: BatonClient
    settings: GatewaySettings

    def browser(self) -> httpx.AsyncClient:
        """An HTTP client that keeps cookies, like a browser (redirects not followed)."""
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    async def login(self, http: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
        """Log ``user`` in through the form, as a browser would."""
        page = await http.get("/login")
        return await http.post(
            "/login", data={"username": user, "password": password, "csrf": csrf_of(page.text)}
        )


def csrf_of(html: str) -> str:
    """The CSRF token in a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


@contextlib.asynccontextmanager
async def running_gateway(
    on_dev: Running, *, sock: socket.socket | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """A worker requiring signed decisions, and the gateway (holding the key) in front of it.

    Pass ``sock`` (from :func:`baton.gateway.serve.bind`) when something must know the
    gateway's port first (an identity provider's redirect URI, a UI's codec endpoint).
    """
    keys = DecisionKeys({"gw": SIGNING_KEY}, "gw")
    signing.install(SigningPolicy(required=True, keys=keys))
    sock = sock or bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    try:
        async with on_dev.worker():
            baton = on_dev.baton
            baton._keys = keys  # what BATON_DECISION_KEYS would give the gateway
            settings = GatewaySettings(
                public_url=f"http://localhost:{port}",
                session_keys={"t1": secrets.token_bytes(32)},
                **overrides,
            )
            srv = server(baton, settings)
            task = asyncio.create_task(srv.serve(sockets=[sock]))
            while not srv.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            try:
                yield Gateway(f"http://localhost:{port}", baton, settings)
            finally:
                srv.should_exit = True
                await task
    finally:
        sock.close()
        signing.install(SigningPolicy())


async def waiting(baton: BatonClient, case_id: str, *, other_than: str = "") -> str:
    """Wait until the case waits on a person with a proposal (not ``other_than``); its digest."""
    for _ in range(300):
        status = await baton.status(case_id)
        awaiting = status.awaiting
        if awaiting is not None and awaiting.proposal and awaiting.proposal != other_than:
            return str(awaiting.proposal)
        assert status.outcome is None, f"{case_id} ended {status.outcome} instead of waiting"
        await asyncio.sleep(0.05)
    raise AssertionError(f"{case_id} never waited on a person")


async def start(
    gw: Gateway, order: str, customer: str, amount: float, *, process: str = "refund-request"
) -> str:
    """A refund case submitted by bob, once it waits on a person."""
    case_id = await gw.baton.start_case(process, refund_case(order, customer, amount), submitted_by="bob")
    await waiting(gw.baton, case_id)
    return case_id


def refund_case(order: str, customer: str, amount: float, reason: str = "defective") -> dict[str, Any]:
    """A refund-request case."""
    return {"order_id": order, "customer_id": customer, "requested_amount": amount, "reason": reason}


__all__ = ["PASSWORD", "REFUNDS_APP", "USERS", "Gateway", "accounts_file", "csrf_of", "running_gateway"]
