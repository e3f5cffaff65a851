"""The ``baton.notify`` activity: POST a case event to the webhooks of a role.

One shared ``httpx.AsyncClient`` per worker (pooled connections, explicit
timeouts, no retries of its own): Temporal owns retries, so every attempt is
visible in the case's history. 408/409/429/5xx and transport errors are
retryable (``Retry-After`` sets the next delay); other 4xx are not. The
workflow never waits on this activity, so a dead webhook cannot block a case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from baton.messages import Notification
from baton.roles import RoleDirectory

RETRYABLE_STATUS = {408, 409, 429}


def retry_after(response: httpx.Response) -> timedelta | None:
    """The server's ``Retry-After`` in seconds, if it sent a usable one."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return timedelta(seconds=min(max(seconds, 0.0), 3600.0))


class NotifyActivities:
    """Posts notifications to the webhooks the directory lists for a role."""

    def __init__(self, directory: RoleDirectory, *, timeout: float = 10.0) -> None:
        self._directory = directory
        self._timeout = httpx.Timeout(timeout, connect=5.0)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Created lazily so it binds to the worker's running event loop.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    @activity.defn(name="baton.notify")
    async def notify(self, note: Notification) -> int:
        """POST ``note`` to every webhook of its role; returns how many were posted."""
        urls = self._directory.webhooks(note.role)
        body = note.model_dump(mode="json")
        for url in urls:
            try:
                response = await self._http().post(
                    url, json=body, headers={"Idempotency-Key": note.idempotency_key}
                )
            except httpx.TransportError as exc:
                raise ApplicationError(
                    f"webhook {url} unreachable: {type(exc).__name__}", type="WebhookUnreachable"
                ) from None
            if response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
                raise ApplicationError(
                    f"webhook {url} answered {response.status_code}",
                    type="WebhookRetryable",
                    next_retry_delay=retry_after(response),
                )
            if response.status_code >= 400:
                raise ApplicationError(
                    f"webhook {url} refused the notification ({response.status_code})",
                    type="WebhookRefused",
                    non_retryable=True,
                )
        return len(urls)

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.notify]
