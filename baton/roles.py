"""The roles directory: who holds which role.

A small interface so a real directory (LDAP, SCIM, an IdP group API) can be
plugged in; the embedded default is a YAML file::

    users:
      alice: {name: Alice Ng, roles: [support-lead], password: 'scrypt$ln=15,r=8,p=1$...$...'}
      carol: {roles: [finance]}
    webhooks:                       # optional: who hears about cases waiting on a role
      finance: [https://chat.example.com/hooks/finance]

``password`` is optional: the hash of a local account's password for ``baton serve``
(``baton user add`` and ``baton user passwd`` write it; see ``baton.gateway.passwords``).
A user without one cannot log in locally but still holds their roles. Because the
file then holds password hashes, keep it readable only by the people who run Baton.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.contracts import validation_problems
from baton.errors import BatonUsageError
from baton.identity import canonical_or_none


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


@dataclass(frozen=True)
class Account:
    """One user of the directory as a login sees them.

    Attributes:
        user_id: the canonical identity (``baton.identity``), what sessions and decisions carry.
        name: the display name ("" if the file gives none).
        roles: the roles held, as listed.
        password_hash: the local password's encoded hash, or None (no local login).
    """

    user_id: str
    name: str
    roles: tuple[str, ...]
    password_hash: str | None


class _User(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    roles: list[str] = Field(default_factory=list)
    password: str | None = None
    """The encoded hash of a local account's password (never the password)."""


class _DirectoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: dict[str, _User]
    webhooks: dict[str, list[str]] = Field(default_factory=dict)


class YamlRoleDirectory:
    """Roles read from a YAML file, re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
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

    def account(self, user_id: str) -> Account | None:
        """The user whose canonical identity is ``user_id``'s, or None (also for a
        ``user_id`` that cannot be an identity).

        Entries are matched in canonical form, as decisions are, so ``Alice`` in the
        file is the account ``alice`` logs in to.

        Raises:
            BatonUsageError: the file cannot be read, or two entries are the same identity
                (which of their passwords and roles would apply is not for a login to guess).
        """
        wanted = canonical_or_none(user_id)
        if wanted is None:
            return None
        found = [(uid, user) for uid, user in self._load().users.items() if canonical_or_none(uid) == wanted]
        if len(found) > 1:
            spelled = " and ".join(repr(uid) for uid, _ in found)
            raise BatonUsageError(f"roles directory {self.path}: users {spelled} are the same identity")
        if not found:
            return None
        user = found[0][1]
        return Account(wanted, user.name, tuple(user.roles), user.password)

    def _load(self) -> _DirectoryFile:
        try:
            info = self.path.stat()
            # Inode and size too: an atomic replace (``baton user passwd``) within the
            # file system's timestamp granularity still reads as a change.
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
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
