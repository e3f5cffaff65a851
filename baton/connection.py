"""Connecting to Temporal the standard way, with Baton's data converter.

Address, namespace, TLS and API key come from Temporal's own environment
variables and config profile (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*``, ``TEMPORAL_PROFILE``), so a worker
moves from the dev server to a cluster or Temporal Cloud without code changes.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from baton.codec import load_codec, with_codec
from baton.errors import BatonRuntimeError

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


def connect_options(
    *, address: str | None = None, namespace: str | None = None, profile: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect``; explicit arguments beat the environment."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    options.setdefault("target_host", DEFAULT_ADDRESS)
    options.setdefault("namespace", DEFAULT_NAMESPACE)
    if address:
        options["target_host"] = address
    if namespace:
        options["namespace"] = namespace
    return options


async def connect(
    *, address: str | None = None, namespace: str | None = None, profile: str | None = None
) -> Client:
    """A client using the pydantic data converter; a clear error if the server is not there."""
    options = connect_options(address=address, namespace=namespace, profile=profile)
    try:
        return await Client.connect(
            **options,
            data_converter=with_codec(pydantic_data_converter, load_codec()),
            interceptors=[TracingInterceptor()],  # one trace per case: client → workflow → activities
        )
    except RuntimeError as exc:
        raise BatonRuntimeError(
            f"cannot reach Temporal at {options['target_host']} "
            f"(namespace {options['namespace']}): {exc}. Is `baton dev` running?"
        ) from None
