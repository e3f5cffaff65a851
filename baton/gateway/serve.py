"""Running the gateway: uvicorn on a socket, with Baton's request log instead of uvicorn's.

uvicorn's access log prints each request's raw path and query, which would put case ids
and filters in the logs; it is off, and :class:`baton.gateway.web.RequestLog` writes one
JSON line per request instead.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from baton.client import BatonClient
from baton.gateway.app import create_app
from baton.gateway.settings import GatewaySettings


def server(client: BatonClient, settings: GatewaySettings) -> uvicorn.Server:
    """A uvicorn server for the gateway (call ``serve(sockets=[...])`` or ``serve()``)."""
    logging.getLogger("baton.gateway.requests").setLevel(logging.INFO)
    config = uvicorn.Config(
        create_app(client, settings),
        access_log=False,
        log_config=None,
        server_header=False,
        lifespan="on",
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port; read it back with ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Named as TCP so asyncio sets TCP_NODELAY on each accepted connection: without it every
    # response on a kept-alive connection waits ~40 ms for a delayed ACK (Nagle's algorithm).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock
