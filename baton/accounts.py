"""Editing the roles file's users: ``baton user add`` and ``baton user passwd``.

The roles file is written by people (its comments say why someone holds a role), so
it is edited in place, never regenerated, and nothing but the edited user changes:

* a new user is one more line after the last, in the style of the others::

      zoe: {name: Zoe Li, roles: [finance], password: 'scrypt$ln=15,r=8,p=1$...$...'}

  rendered by ruamel.yaml and spliced in as text, so a comment that follows the last
  user (and belongs to the next section) stays where it is;
* a password is set with ruamel.yaml's round-trip mode, which keeps comments, order,
  quoting and each entry's flow style. Layout it cannot reproduce (unusual
  indentation, spacing before a comment) is normalised; a warning says so.

An edit is all or nothing. The new text is written to a temporary file beside the
roles file and read back, before it replaces the file (``os.replace``, mode kept),
twice: with PyYAML it must hold exactly the old data plus the change (so the edit
cannot have disturbed another user), and with :class:`~baton.roles.YamlRoleDirectory`,
the reader the worker and the gateway use, it must load and show the user as
intended. A crash or a mistake never leaves a half-written or unreadable
directory, and if the file changed on disk meanwhile, nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from baton.errors import BatonUsageError
from baton.identity import IdentityError, canonical, canonical_or_none
from baton.roles import Account, YamlRoleDirectory

log = logging.getLogger(__name__)

MAX_NAME = 200
"""Longest display name accepted."""


def add_user(
    path: str | Path, user_id: str, *, name: str, roles: list[str], password_hash: str | None
) -> None:
    """Add ``user_id`` to the roles file at ``path``, as the last of its users.

    Args:
        path: the roles file.
        user_id: the new user's id, in canonical form (``baton.identity``).
        name: display name ("" for none).
        roles: the roles the user holds (at least one; repeats are dropped).
        password_hash: an encoded hash (``baton.gateway.passwords.hash_password``), or None
            for a user who does not log in locally.

    Raises:
        BatonUsageError: the id is not canonical or is taken (in any spelling), no role or
            a bad role or name is given, or the file cannot be read, edited or written.
    """
    user_id = check_new_user(path, user_id)
    roles = _checked_roles(path, roles)
    name = _checked_name(path, name)
    if password_hash is not None:
        _check_hash(path, password_hash)
    edit = _Edit.open(path)
    fields: dict[str, Any] = {"name": name, "roles": roles, "password": password_hash}
    entry = CommentedMap()
    if name:
        entry["name"] = _scalar(name)
    entry["roles"] = _sequence(roles)
    if password_hash is not None:
        entry["password"] = SingleQuotedScalarString(password_hash)
    if edit.entries_in_flow_style():
        entry.fa.set_flow_style()
    else:
        entry.fa.set_block_style()
    text = edit.appended(_scalar(user_id), entry)
    expected = copy.deepcopy(edit.data)
    expected["users"][user_id] = {k: v for k, v in fields.items() if v}
    edit.commit(text, expected, Account(user_id, name, tuple(roles), password_hash))


def set_password(path: str | Path, user_id: str, password_hash: str) -> None:
    """Set (or replace) the password hash of ``user_id`` (any spelling of the identity).

    Raises:
        BatonUsageError: no such user, or the file cannot be read, edited or written.
    """
    _check_hash(path, password_hash)
    edit = _Edit.open(path)
    key, account = edit.find(user_id)
    if edit.render() != edit.text:
        log.warning(
            "%s: the edit also normalises the file's layout (indentation or spacing); "
            "its comments and values are kept",
            path,
        )
    entry = edit.users[key]
    value = SingleQuotedScalarString(password_hash)
    if "password" in entry or entry.fa.flow_style():
        entry["password"] = value
    else:
        # First, not last: the last key of the last user holds any comment that follows
        # the users, and a key appended after it would land below that comment.
        entry.insert(0, "password", value)
    expected = copy.deepcopy(edit.data)
    expected["users"][key]["password"] = password_hash
    edit.commit(edit.render(), expected, Account(account.user_id, account.name, account.roles, password_hash))


def check_new_user(path: str | Path, user_id: str) -> str:
    """``user_id`` if it can be added to the roles file at ``path`` (checked before
    asking for a password, so nobody types one twice for nothing).

    Raises:
        BatonUsageError: not an identity, not in canonical form, or already a user there
            (in this or another spelling of the same identity).
    """
    try:
        wanted = canonical(user_id)
    except IdentityError as exc:
        raise BatonUsageError(f"{path}: user id {user_id!r}: {exc}") from None
    if wanted != user_id:
        raise BatonUsageError(f"{path}: user id {user_id!r} is not in canonical form: use {wanted!r}")
    if YamlRoleDirectory(path).account(wanted) is not None:
        raise BatonUsageError(f"{path}: user {wanted!r} already exists")
    return wanted


def check_user(path: str | Path, user_id: str) -> Account:
    """The account of ``user_id`` in the roles file at ``path``.

    Raises:
        BatonUsageError: no such user (or the file cannot be read).
    """
    account = YamlRoleDirectory(path).account(user_id)
    if account is None:
        raise BatonUsageError(f"{path}: no user {user_id!r}")
    return account


def _check_hash(path: str | Path, password_hash: str) -> None:
    """Refuse what is not an encoded hash (``scheme$params$salt$key``): a password passed
    here by mistake would be stored in clear."""
    parts = password_hash.split("$")
    if len(parts) != 4 or not all(parts) or not password_hash.isascii() or " " in password_hash:
        raise BatonUsageError(
            f"{path}: that is not an encoded password hash (baton.gateway.passwords.hash_password)"
        )


def _checked_roles(path: str | Path, roles: list[str]) -> list[str]:
    """The roles without repeats, in the order given; refused if none or one is unusable."""
    unique = list(dict.fromkeys(roles))
    if not unique:
        raise BatonUsageError(f"{path}: a user needs at least one role")
    for role in unique:
        if not role or role != role.strip() or _has_control(role):
            raise BatonUsageError(
                f"{path}: role {role!r}: a role may not be empty, start or end with space, "
                "or hold control characters"
            )
    return unique


def _checked_name(path: str | Path, name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME or _has_control(name):
        raise BatonUsageError(
            f"{path}: name {name[:40]!r}: a name may be at most {MAX_NAME} characters "
            "and may not hold control characters"
        )
    return name


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in text)


def _scalar(text: str) -> str:
    """``text``, quoted if PyYAML (YAML 1.1: ``no``, ``on``, ``1_000``) would read it as
    something else: ruamel.yaml writes YAML 1.2, but the directory is read with PyYAML."""
    resolver: Any = yaml.resolver.Resolver()  # the stubs leave resolve() untyped
    resolved = resolver.resolve(yaml.ScalarNode, text, (True, False))
    return text if resolved == "tag:yaml.org,2002:str" else SingleQuotedScalarString(text)


def _sequence(items: list[str]) -> CommentedSeq:
    seq = CommentedSeq([_scalar(item) for item in items])
    seq.fa.set_flow_style()
    return seq


@dataclass
class _Edit:
    """One roles file, loaded for an edit: its text, its data as the directory reads it
    (PyYAML), and its round-trip document (ruamel.yaml)."""

    path: Path
    original: bytes
    text: str
    data: dict[str, Any]
    yaml: YAML
    document: CommentedMap
    users: CommentedMap

    @classmethod
    def open(cls, path: str | Path) -> _Edit:
        path = Path(path)
        YamlRoleDirectory(path).roles()  # refuse to edit a file that does not load now
        try:
            original = path.read_bytes()
            text = original.decode("utf-8")
        except OSError as exc:
            raise BatonUsageError(f"{path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise BatonUsageError(f"{path}: not UTF-8 text") from None
        editor = YAML(typ="rt")
        editor.preserve_quotes = True
        editor.width = 4096  # never fold a long entry (a password hash) onto a second line
        try:
            document, _, block_seq_indent = load_yaml_guess_indent(text, yaml=editor)
        except YAMLError as exc:
            raise BatonUsageError(f"{path}: {exc}") from None
        users = document.get("users") if isinstance(document, CommentedMap) else None
        if not isinstance(users, CommentedMap):
            raise BatonUsageError(f"{path}: expected a mapping with a 'users' mapping")
        indent = _mapping_indent(document, users)
        if block_seq_indent is None:
            editor.indent(mapping=indent, sequence=indent, offset=0)
        else:
            editor.indent(mapping=indent, sequence=indent + block_seq_indent, offset=block_seq_indent)
        data = yaml.safe_load(text)
        return cls(path, original, text, data, editor, document, users)

    def entries_in_flow_style(self) -> bool:
        """Whether users are written ``alice: {name: ..., roles: [...]}`` (the last one decides)."""
        for value in reversed(list(self.users.values())):
            if isinstance(value, CommentedMap):
                return value.fa.flow_style() is not False
        return True

    def find(self, user_id: str) -> tuple[Any, Account]:
        """The file's key for ``user_id`` (in whatever spelling) and its account."""
        account = check_user(self.path, user_id)
        keys = [k for k in self.users if isinstance(k, str) and canonical_or_none(k) == account.user_id]
        if len(keys) != 1 or not isinstance(self.users[keys[0]], CommentedMap):
            raise BatonUsageError(f"{self.path}: cannot find user {account.user_id!r} to edit")
        return keys[0], account

    def appended(self, key: str, entry: CommentedMap) -> str:
        """The text with ``key: entry`` inserted as new lines after the last user's.

        Falls back to a round-trip dump where lines cannot be placed safely: ``users``
        written as a flow mapping (``users: {}``), or line breaks other than ``\\n``.
        """
        if "\r" in self.text.replace("\r\n", "") or any(c in self.text for c in "\x85\u2028\u2029"):
            return self._dumped_with(key, entry)
        users = _users_node(self.yaml.compose(self.text))
        if users is None or users.flow_style or not users.value:
            return self._dumped_with(key, entry)
        last_key, last_value = users.value[-1]
        lines = self.text.splitlines(keepends=True)
        after = _last_line(last_value, lines, floor=last_key.start_mark.line)
        newline = "\r\n" if "\r\n" in self.text else "\n"
        if not lines[after].endswith("\n"):
            lines[after] += newline
        out = io.StringIO()
        self.yaml.dump(CommentedMap([(key, entry)]), out)
        margin = " " * last_key.start_mark.column
        added = [margin + line + newline for line in out.getvalue().splitlines()]
        return "".join(lines[: after + 1] + added + lines[after + 1 :])

    def _dumped_with(self, key: str, entry: CommentedMap) -> str:
        if not self.users and self.users.fa.flow_style():
            self.users.fa.set_block_style()  # `users: {}` grows into one user per line
        self.users[key] = entry
        return self.render()

    def render(self) -> str:
        """The round-trip document as text."""
        out = io.StringIO()
        self.yaml.dump(self.document, out)
        text = out.getvalue()
        return text.replace("\n", "\r\n") if "\r\n" in self.text else text

    def commit(self, text: str, expected: dict[str, Any], account: Account) -> None:
        """Write ``text`` if it reads back as ``expected`` (PyYAML) showing ``account``."""

        def check(written: Path) -> str | None:
            if yaml.safe_load(written.read_text(encoding="utf-8")) != expected:
                return "it would not read back as intended (anything but the change differs)"
            if YamlRoleDirectory(written).account(account.user_id) != account:
                return f"user {account.user_id!r} would not read back as written"
            return None

        _replace(self.path, self.original, text.encode("utf-8"), check)


def _users_node(root: Node | None) -> MappingNode | None:
    if not isinstance(root, MappingNode):
        return None
    for key, value in root.value:
        if isinstance(key, ScalarNode) and key.value == "users" and isinstance(value, MappingNode):
            return value
    return None


def _last_line(node: Node, lines: list[str], *, floor: int) -> int:
    """Index of the last line holding ``node``'s text (block collections: their last item's)."""
    while isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, MappingNode) else last
    line = int(node.end_mark.line)
    if node.end_mark.column == 0:
        line -= 1  # a block scalar (or an empty value) ends where the next line starts
    while line > floor and not lines[min(line, len(lines) - 1)].strip():
        line -= 1  # a block scalar's trailing blank lines
    return min(max(line, floor), len(lines) - 1)


def _mapping_indent(document: CommentedMap, users: CommentedMap) -> int:
    """How far the file indents a user under ``users:`` (2 if it has none to go by)."""
    with contextlib.suppress(Exception):  # positions are ruamel.yaml's best effort
        first = next(iter(users))
        indent = int(users.lc.key(first)[1]) - int(document.lc.key("users")[1])
        if indent > 0:
            return indent
    return 2


def _replace(path: Path, original: bytes, text: bytes, check: Callable[[Path], str | None]) -> None:
    """Replace ``path`` with ``text`` atomically, if ``check`` passes on the new file and the
    file still holds ``original``; its mode (and, as root, its owner) is kept."""
    target = path.resolve()  # through a symlink: the link stays a link
    try:
        info = target.stat()
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise BatonUsageError(f"{path}: {exc.strerror}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, stat.S_IMODE(info.st_mode))
        if os.geteuid() == 0 and (info.st_uid, info.st_gid) != (0, 0):
            os.chown(temp, info.st_uid, info.st_gid)
        try:
            problem = check(temp)
        except (BatonUsageError, yaml.YAMLError) as exc:
            problem = str(exc).replace(str(temp), str(path))
        if problem is not None:
            raise BatonUsageError(f"{path}: the edit was not saved: {problem}")
        if target.read_bytes() != original:
            raise BatonUsageError(f"{path}: changed by someone else during the edit; nothing was saved")
        os.replace(temp, target)
    except OSError as exc:
        raise BatonUsageError(f"{path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
