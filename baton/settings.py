"""Configuration from the environment with local defaults; no work at import time.

Temporal connection settings come from Temporal's own environment variables and
config profile (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
``TEMPORAL_TLS_*``, ``TEMPORAL_PROFILE``), read by ``temporalio.envconfig``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, get_args

from baton.errors import BatonUsageError

if TYPE_CHECKING:
    from baton.app import App
    from baton.signing import SigningPolicy

DEFAULT_TASK_QUEUE = "baton"
DEFAULT_PROVIDERS_FILE = Path(__file__).resolve().parent / "defaults" / "providers.yaml"
"""Baton's own providers file (OpenAI, Ollama), used when an app declares none."""

SandboxMode = Literal["off", "shared", "strict"]
"""How the worker runs GovernedProcess: see ``worker.workflow_runner``."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    """Where Baton keeps its files and which task queue it serves.

    Built from an app with :meth:`for_app`; the environment (``BATON_HOME``,
    ``BATON_TASK_QUEUE``, ``BATON_ROLES_FILE``, ``BATON_PROVIDERS_FILE``) wins over
    the app file, so one app deploys to several environments unchanged.
    """

    home: Path = field(default_factory=lambda: Path(_env("BATON_HOME", ".baton")))
    task_queue: str = field(default_factory=lambda: _env("BATON_TASK_QUEUE", DEFAULT_TASK_QUEUE))
    roles_file: Path = field(default_factory=lambda: Path(_env("BATON_ROLES_FILE", "roles.yaml")))
    providers_file: Path = field(
        default_factory=lambda: Path(_env("BATON_PROVIDERS_FILE", str(DEFAULT_PROVIDERS_FILE)))
    )
    shutdown_grace: float = field(
        default_factory=lambda: float(os.environ.get("BATON_SHUTDOWN_GRACE_SECONDS", "20"))
    )
    """How long SIGTERM lets in-flight activities finish before they are cancelled."""
    sandbox_choice: str = field(default_factory=lambda: os.environ.get("BATON_WORKFLOW_SANDBOX", "off"))

    @classmethod
    def for_app(cls, app: App | None) -> Settings:
        """Settings of ``app`` (its home, queue, roles and providers), the environment winning."""
        if app is None:
            return cls()
        providers = app.providers_file or DEFAULT_PROVIDERS_FILE
        return cls(
            home=Path(_env("BATON_HOME", str(app.home))),
            task_queue=_env("BATON_TASK_QUEUE", app.task_queue),
            roles_file=Path(_env("BATON_ROLES_FILE", str(app.roles_file))),
            providers_file=Path(_env("BATON_PROVIDERS_FILE", str(providers))),
        )

    @property
    def workflow_sandbox(self) -> SandboxMode:
        """``$BATON_WORKFLOW_SANDBOX``: ``off`` (default), ``shared`` or ``strict``."""
        value = self.sandbox_choice.strip().lower()
        if value not in get_args(SandboxMode):
            choices = ", ".join(get_args(SandboxMode))
            raise BatonUsageError(f"BATON_WORKFLOW_SANDBOX={self.sandbox_choice!r}: expected {choices}")
        return cast(SandboxMode, value)

    def signing(self) -> SigningPolicy:
        """Whether decisions must be signed, and the keys (``BATON_DECISION_KEYS``, or the
        development key in the home): see ``baton.signing``."""
        from baton.signing import SigningPolicy  # messages import signing; settings stay light

        return SigningPolicy.from_env(os.environ, self.home)

    @property
    def audit_log(self) -> Path:
        """The hash-chained audit log (``$BATON_AUDIT_LOG`` or ``$BATON_HOME/audit.jsonl``)."""
        return Path(os.environ.get("BATON_AUDIT_LOG", str(self.home / "audit.jsonl")))

    @property
    def temporal_db(self) -> Path:
        """SQLite file the embedded dev server persists to."""
        return self.home / "temporal.db"
