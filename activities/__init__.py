"""Baton's own activities: the LLM agent, the audit log, the directory, notifications.

An app's agents and actions are not here: the app names them in its own file
(``baton.toml``), and ``worker.py`` serves them beside these. ``build_activities``
binds Baton's activities to one worker's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activities.audit import AuditActivities
from activities.directory import DirectoryActivities
from activities.llm import LlmActivities
from activities.llm.providers import ProviderConfig, load_providers
from activities.notify import NotifyActivities
from activities.signing import SigningActivities
from baton import signing
from baton.app import activity_name
from baton.auditlog import AuditLog
from baton.roles import YamlRoleDirectory
from baton.settings import Settings

BATON_ACTIVITY_NAMES = frozenset(
    name
    for cls in (AuditActivities, DirectoryActivities, LlmActivities, NotifyActivities, SigningActivities)
    for value in vars(cls).values()
    if (name := activity_name(value)) is not None
)
"""Names Baton serves on every worker; an app may not reuse them."""


@dataclass
class ActivitySet:
    """The activities a worker serves, and what must be closed when it stops."""

    activities: list[Callable[..., Any]]
    notify: NotifyActivities
    llm: LlmActivities
    audit: AuditActivities

    async def aclose(self) -> None:
        """Release shared clients (webhooks, LLM providers, the audit sink's connection)."""
        await self.notify.aclose()
        await self.llm.aclose()
        self.audit.log.close()


def build_activities(
    settings: Settings, *, providers: dict[str, ProviderConfig] | None = None
) -> ActivitySet:
    """Baton's own activities, bound to ``settings``' files.

    Args:
        settings: where the roles, providers and audit log are, and the signing policy
            (installed for this process's ``decide`` validators as well).
        providers: LLM providers to use instead of the providers file (``baton dev``
            points every provider at the scripted stand-in this way).
    """
    directory = YamlRoleDirectory(settings.roles_file)
    notify = NotifyActivities(directory)
    llm = LlmActivities(providers if providers is not None else load_providers(settings.providers_file))
    audit = AuditActivities(AuditLog(settings.audit_log))
    policy = settings.signing()
    signing.install(policy)  # the worker's decide validators verify with the same policy
    served = [
        *DirectoryActivities(directory).all(),
        *notify.all(),
        *llm.all(),
        *audit.all(),
        *SigningActivities(policy).all(),
    ]
    return ActivitySet(served, notify, llm, audit)


__all__ = [
    "BATON_ACTIVITY_NAMES",
    "ActivitySet",
    "AuditActivities",
    "DirectoryActivities",
    "LlmActivities",
    "NotifyActivities",
    "SigningActivities",
    "build_activities",
]
