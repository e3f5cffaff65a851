"""Agents and side effects, each a Temporal activity.

``build_activities`` is what the worker registers: the reference process's
agents and action, plus Baton's own directory lookup and notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.audit import AuditActivities
from activities.directory import DirectoryActivities
from activities.llm import LlmActivities
from activities.llm.providers import load_providers
from activities.notify import NotifyActivities
from activities.refunds import RefundActivities
from baton.auditlog import AuditLog
from baton.roles import YamlRoleDirectory
from baton.settings import Settings


@dataclass
class ActivitySet:
    """The activities a worker serves, and what must be closed when it stops."""

    activities: list[Callable[..., Any]]
    notify: NotifyActivities
    llm: LlmActivities

    async def aclose(self) -> None:
        """Release shared clients (webhooks, LLM providers)."""
        await self.notify.aclose()
        await self.llm.aclose()


def build_activities(settings: Settings) -> ActivitySet:
    """Every activity the worker serves, bound to ``settings``' files."""
    directory = YamlRoleDirectory(settings.roles_file)
    refunds = RefundActivities(settings.refunds_db, pause_after_write=settings.chaos_pause)
    notify = NotifyActivities(directory)
    llm = LlmActivities(load_providers(settings.providers_file))
    audit = AuditActivities(AuditLog(settings.audit_log))
    served = [
        *refunds.all(),
        *DirectoryActivities(directory).all(),
        *notify.all(),
        *llm.all(),
        *audit.all(),
    ]
    return ActivitySet(served, notify, llm)


__all__ = [
    "ActivitySet",
    "AuditActivities",
    "DirectoryActivities",
    "LlmActivities",
    "NotifyActivities",
    "RefundActivities",
    "build_activities",
]
