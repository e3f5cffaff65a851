"""Agents and side effects, each a Temporal activity.

``build_activities`` is what the worker registers: the reference process's
agents and action, plus Baton's own directory lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.directory import DirectoryActivities
from activities.refunds import RefundActivities
from baton.roles import YamlRoleDirectory
from baton.settings import Settings


def build_activities(settings: Settings) -> list[Callable[..., Any]]:
    """Every activity the worker serves, bound to ``settings``' files."""
    refunds = RefundActivities(settings.refunds_db)
    directory = DirectoryActivities(YamlRoleDirectory(settings.roles_file))
    return [*refunds.all(), *directory.all()]


__all__ = ["DirectoryActivities", "RefundActivities", "build_activities"]
