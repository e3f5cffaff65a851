"""The roles directory: who holds which role.

A small interface so a real directory (LDAP, SCIM, an IdP group API) can be
plugged in; the embedded default is a YAML file::

    users:
      alice: {name: Alice Ng, roles: [support-lead]}
      carol: {roles: [finance]}
    webhooks:                       # optional: who hears about cases waiting on a role
      finance: [https://chat.example.com/hooks/finance]
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.contracts import validation_problems
from baton.errors import BatonUsageError


class RoleDirectory(Protocol):
    """Answers "who holds this role" at the moment a case asks."""

    def members(self, role: str) -> list[str]:
        """User ids holding ``role`` (empty if none or unknown)."""
        ...

    def roles(self) -> dict[str, int]:
        """Every role the directory knows, with its member count, for validating ladders."""
        ...

    def webhooks(self, role: str) -> list[str]:
        """URLs to notify about cases waiting on ``role``."""
        ...


class _User(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    roles: list[str] = Field(default_factory=list)


class _DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: dict[str, _User]
    webhooks: dict[str, list[str]] = Field(default_factory=dict)


class YamlRoleDirectory:
    """Roles read from a YAML file, re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: float | None = None
        self._file = _DirectoryFile(users={})

    def members(self, role: str) -> list[str]:
        """User ids holding ``role``, sorted."""
        return sorted(uid for uid, user in self._load().users.items() if role in user.roles)

    def roles(self) -> dict[str, int]:
        """Every role any user holds, with how many hold it."""
        counts: dict[str, int] = {}
        for user in self._load().users.values():
            for role in user.roles:
                counts[role] = counts.get(role, 0) + 1
        return counts

    def webhooks(self, role: str) -> list[str]:
        """Webhook URLs configured for ``role`` (empty if none)."""
        return list(self._load().webhooks.get(role, []))

    def _load(self) -> _DirectoryFile:
        try:
            stamp = self.path.stat().st_mtime
        except OSError as exc:
            raise BatonUsageError(f"roles directory {self.path}: {exc.strerror}") from None
        if stamp != self._stamp:
            try:
                raw = yaml.safe_load(self.path.read_text(encoding="utf-8"))
                self._file = _DirectoryFile.model_validate(raw)
            except yaml.YAMLError as exc:
                raise BatonUsageError(f"roles directory {self.path}: {exc}") from None
            except ValidationError as exc:
                problems = "; ".join(validation_problems(exc))
                raise BatonUsageError(f"roles directory {self.path}: {problems}") from None
            self._stamp = stamp
        return self._file
