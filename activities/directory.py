"""The ``baton.role_members`` activity: the workflow's only view of the directory.

Looking members up in an activity records the answer in the case's history,
so a replay sees the same approvers and the audit shows who could decide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from baton.messages import RoleMembers, RoleQuery
from baton.roles import RoleDirectory


class DirectoryActivities:
    """Binds a :class:`RoleDirectory` to the activity the workflow calls."""

    def __init__(self, directory: RoleDirectory) -> None:
        self._directory = directory

    @activity.defn(name="baton.role_members")
    async def role_members(self, query: RoleQuery) -> RoleMembers:
        """Who holds ``query.role`` now."""
        return RoleMembers(role=query.role, members=self._directory.members(query.role))

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.role_members]
