"""Configuration from the environment with local defaults; no work at import time.

Temporal connection settings come from Temporal's own environment variables and
config profile (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS_*``, ``TEMPORAL_PROFILE``), read by ``temporalio.envconfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from baton.errors import BatonUsageError
from processes import specs_dir

DEFAULT_TASK_QUEUE = "baton"

SandboxMode = Literal["off", "shared", "strict"]
"""How the worker runs GovernedProcess: see ``worker.workflow_runner``."""


@dataclass(frozen=True)
class Settings:
    """Where Baton keeps its files and which task queue it serves."""

    home: Path = field(default_factory=lambda: Path(os.environ.get("BATON_HOME", ".baton")))
    task_queue: str = field(default_factory=lambda: os.environ.get("BATON_TASK_QUEUE", DEFAULT_TASK_QUEUE))
    roles_file: Path = field(
        default_factory=lambda: Path(os.environ.get("BATON_ROLES_FILE", str(specs_dir() / "roles.yaml")))
    )
    providers_file: Path = field(
        default_factory=lambda: Path(
            os.environ.get("BATON_PROVIDERS_FILE", str(specs_dir() / "providers.yaml"))
        )
    )
    chaos_pause: float = field(
        default_factory=lambda: float(os.environ.get("BATON_CHAOS_PAUSE_AFTER_WRITE", "0"))
    )
    """Crash tests only: seconds the refund action waits after its ledger commit."""
    shutdown_grace: float = field(
        default_factory=lambda: float(os.environ.get("BATON_SHUTDOWN_GRACE_SECONDS", "20"))
    )
    """How long SIGTERM lets in-flight activities finish before they are cancelled."""
    sandbox_choice: str = field(default_factory=lambda: os.environ.get("BATON_WORKFLOW_SANDBOX", "off"))
    refunds_db_override: str | None = field(default_factory=lambda: os.environ.get("BATON_REFUNDS_DB"))

    @property
    def refunds_db(self) -> Path:
        """SQLite file of the reference process's orders and refund ledger."""
        return Path(self.refunds_db_override) if self.refunds_db_override else self.home / "refunds.db"

    @property
    def workflow_sandbox(self) -> SandboxMode:
        """``$BATON_WORKFLOW_SANDBOX``: ``off`` (default), ``shared`` or ``strict``."""
        value = self.sandbox_choice.strip().lower()
        if value not in get_args(SandboxMode):
            choices = ", ".join(get_args(SandboxMode))
            raise BatonUsageError(f"BATON_WORKFLOW_SANDBOX={self.sandbox_choice!r}: expected {choices}")
        return cast(SandboxMode, value)

    @property
    def audit_log(self) -> Path:
        """The hash-chained audit log (``$BATON_AUDIT_LOG`` or ``$BATON_HOME/audit.jsonl``)."""
        return Path(os.environ.get("BATON_AUDIT_LOG", str(self.home / "audit.jsonl")))

    @property
    def temporal_db(self) -> Path:
        """SQLite file the embedded dev server persists to."""
        return self.home / "temporal.db"


def resolve_process(name_or_path: str) -> Path:
    """``refund-request`` → the bundled spec; anything with a suffix or slash is a path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return Path(name_or_path)
    return specs_dir() / f"{name_or_path}.yaml"
