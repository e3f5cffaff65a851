"""Agents and side effects, each a Temporal activity.

``build_activities`` is what the worker registers: the reference process's
agents and action, plus Baton's own directory lookup and notifications.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.directory import DirectoryActivities
from activities.notify import NotifyActivities
from activities.refunds import RefundActivities
from baton.roles import YamlRoleDirectory
from baton.settings import Settings


@dataclass
class ActivitySet:
    """The activities a worker serves, and what must be closed when it stops."""

    activities: list[Callable[..., Any]]
    notify: NotifyActivities

    async def aclose(self) -> None:
        """Release shared clients (the webhook HTTP client)."""
        await self.notify.aclose()


def build_activities(settings: Settings) -> ActivitySet:
    """Every activity the worker serves, bound to ``settings``' files."""
    directory = YamlRoleDirectory(settings.roles_file)
    refunds = RefundActivities(settings.refunds_db)
    notify = NotifyActivities(directory)
    return ActivitySet([*refunds.all(), *DirectoryActivities(directory).all(), *notify.all()], notify)


__all__ = [
    "ActivitySet",
    "DirectoryActivities",
    "NotifyActivities",
    "RefundActivities",
    "build_activities",
]
