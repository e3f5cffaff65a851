"""Local accounts: password hashes, login throttling, editing the roles file, ``baton user``."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from baton import accounts
from baton.errors import BatonUsageError
from baton.gateway import passwords
from baton.gateway.passwords import (
    check_new_password,
    hash_password,
    needs_rehash,
    verify_password,
    verify_unknown_user,
)
from baton.gateway.throttle import LoginThrottle
from baton.roles import Account, YamlRoleDirectory

ROOT = Path(__file__).resolve().parent.parent
REFUNDS = ROOT / "examples" / "refunds"
BATON = str(Path(sys.executable).parent / "baton")
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def a_hash() -> str:
    """One hash for the module (each costs a tenth of a second)."""
    return hash_password(PASSWORD)


# -- passwords ---------------------------------------------------------------


def test_a_hash_names_its_scheme_and_verifies_only_its_password(a_hash: str) -> None:
    scheme, params, salt, key = a_hash.split("$")
    assert (scheme, params) == ("scrypt", "ln=15,r=8,p=1")
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(key + "=")) == 32
    assert verify_password(PASSWORD, a_hash)
    assert not verify_password(PASSWORD + " ", a_hash)
    assert not verify_password("Correct horse battery", a_hash)
    assert hash_password(PASSWORD) != a_hash  # a fresh salt each time


def test_the_same_password_composed_differently_matches() -> None:
    password = "crème brûlée pass"
    encoded = hash_password(unicodedata.normalize("NFC", password))
    assert verify_password(unicodedata.normalize("NFD", password), encoded)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _encode(salt: bytes, key: bytes, params: str = "ln=15,r=8,p=1") -> str:
    return f"scrypt${params}${_b64(salt)}${_b64(key)}"


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        PASSWORD,
        "$$$",
        "bcrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$ln=15,r=8$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$ln=15,r=8,p=1,ln=15$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$ln=15,r=8,p=one$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$ln=15,r=8,p=1$!!not base64!!$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",
        "scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$",
        "scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5$extra",
        "scrypt$ln=24,r=32,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",  # 2 GiB: refused
        "scrypt$ln=15,r=8,p=16$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",  # 16x the work
        "scrypt$ln=15,r=8,p=١$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5",  # an Arabic digit
        "scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5" + "A" * 600,
    ],
)
def test_a_malformed_or_unknown_hash_is_false_never_an_exception(encoded: str) -> None:
    assert not verify_password(PASSWORD, encoded)
    assert needs_rehash(encoded)


def test_a_password_that_cannot_be_encoded_is_false(a_hash: str) -> None:
    assert not verify_password("lone surrogate \udc80 here", a_hash)
    assert not verify_password("x" * (passwords.MAX_PASSWORD + 1), a_hash)


def test_older_parameters_still_verify_and_ask_for_a_rehash(a_hash: str) -> None:
    salt = b"s" * 16
    key = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=32)
    older = _encode(salt, key, "ln=14,r=8,p=1")
    assert verify_password(PASSWORD, older)
    assert needs_rehash(older)
    assert not needs_rehash(a_hash)


def test_an_unknown_user_costs_a_verification_and_never_matches() -> None:
    assert not needs_rehash(passwords._DUMMY_HASH)  # the same work as a real account's hash
    assert not verify_unknown_user(PASSWORD)
    assert not verify_unknown_user("this password matches no account")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("", "at least 12"),
        ("eleven char", "at least 12"),
        ("x" * 1025, "at most 1024"),
        ("twelve chars\n", "control characters"),
        ("twelve chars \x00", "control characters"),
    ],
)
def test_a_new_password_must_be_usable(password: str, problem: str) -> None:
    with pytest.raises(BatonUsageError, match=problem):
        check_new_password(password)
    with pytest.raises(BatonUsageError, match=problem):
        hash_password(password)


def test_twelve_to_1024_characters_are_accepted() -> None:
    check_new_password("twelve chars")
    check_new_password("x" * 1024)


# -- throttle ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_of_one_user_from_anywhere_make_them_wait() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for i in range(4):
        throttle.failed("alice", f"10.0.0.{i}")
        clock.now += 10
    assert throttle.retry_after("alice", "10.0.1.1") == 0.0
    throttle.failed("alice", "10.0.0.9")
    assert throttle.retry_after("alice", "10.0.1.1") == pytest.approx(900 - 40)
    assert throttle.retry_after("ALICE", "10.0.1.1") > 0  # the same identity
    assert throttle.retry_after("bob", "10.0.0.1") == 0.0


def test_twenty_failures_from_one_address_make_it_wait_for_any_user() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for i in range(19):
        throttle.failed(f"user{i}", "192.0.2.7")
    assert throttle.retry_after("someone", "192.0.2.7") == 0.0
    throttle.failed("user19", "192.0.2.7")
    assert throttle.retry_after("someone", "192.0.2.7") == pytest.approx(900)
    assert throttle.retry_after("someone", "192.0.2.8") == 0.0


def test_a_failure_stops_counting_once_the_window_has_passed() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.failed("alice", "192.0.2.1")
        clock.now += 60
    # failures at 0, 60, ..., 240 (relative); now 300: the first ages out at 900
    assert throttle.retry_after("alice", "192.0.2.1") == pytest.approx(600)
    clock.now += 599
    assert throttle.retry_after("alice", "192.0.2.1") == pytest.approx(1)
    clock.now += 1
    assert throttle.retry_after("alice", "192.0.2.1") == 0.0
    throttle.failed("alice", "192.0.2.1")  # the window slides: four are still in it
    assert throttle.retry_after("alice", "192.0.2.1") == pytest.approx(60)


def test_success_clears_the_users_failures_but_not_the_addresss() -> None:
    throttle = LoginThrottle(per_user=3, per_address=4, clock=Clock())
    for _ in range(3):
        throttle.failed("alice", "192.0.2.1")
    assert throttle.retry_after("alice", "192.0.2.2") > 0
    throttle.succeeded("Alice", "192.0.2.2")
    assert throttle.retry_after("alice", "192.0.2.2") == 0.0
    throttle.failed("bob", "192.0.2.1")
    assert throttle.retry_after("carol", "192.0.2.1") > 0  # the address's four still count


def test_ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = LoginThrottle(per_user=100, per_address=2, clock=Clock())
    throttle.failed("a", "2001:db8:1:2::1")
    throttle.failed("b", "2001:db8:1:2:ffff::9")
    assert throttle.retry_after("c", "2001:db8:1:2::77") > 0
    assert throttle.retry_after("c", "2001:db8:1:3::1") == 0.0
    throttle.failed("a", "::ffff:192.0.2.1")
    throttle.failed("b", "192.0.2.1")
    assert throttle.retry_after("c", "192.0.2.1") > 0


def test_memory_is_bounded_and_the_least_recently_failed_are_forgotten() -> None:
    throttle = LoginThrottle(per_user=1, max_keys=10, clock=Clock())
    for i in range(100):
        throttle.failed(f"user{i}", f"198.51.100.{i}")
    assert len(throttle) == 10
    assert throttle.retry_after("user99", "203.0.113.1") > 0
    assert throttle.retry_after("user0", "203.0.113.1") == 0.0
    throttle.failed("x" * 1_000_000, "y" * 1_000_000)
    assert max(len(key) for key in throttle._failures) < 200  # over-long names kept as digests
    assert throttle.retry_after("x" * 1_000_000, "203.0.113.1") > 0


def test_reading_the_throttle_stores_nothing() -> None:
    throttle = LoginThrottle(clock=Clock())
    for i in range(50):
        assert throttle.retry_after(f"user{i}", f"198.51.100.{i}") == 0.0
    assert len(throttle) == 0


# -- editing the roles file --------------------------------------------------


@pytest.fixture
def roles_file(tmp_path: Path) -> Path:
    path = tmp_path / "roles.yaml"
    shutil.copy(REFUNDS / "roles.yaml", path)
    return path


def test_add_user_appends_one_line_and_keeps_the_rest_byte_for_byte(roles_file: Path, a_hash: str) -> None:
    before = roles_file.read_text().splitlines(keepends=True)
    accounts.add_user(roles_file, "zoe", name="Zoe Li", roles=["finance"], password_hash=a_hash)
    after = roles_file.read_text().splitlines(keepends=True)
    assert after[:-1] == before
    assert after[-1] == f"  zoe: {{name: Zoe Li, roles: [finance], password: '{a_hash}'}}\n"
    directory = YamlRoleDirectory(roles_file)
    account = directory.account("zoe")
    assert account == Account("zoe", "Zoe Li", ("finance",), a_hash)
    assert verify_password(PASSWORD, account.password_hash or "")
    assert directory.members("finance") == ["carol", "erin", "zoe"]


def test_set_password_changes_only_that_users_line(roles_file: Path, a_hash: str) -> None:
    before = roles_file.read_text().splitlines(keepends=True)
    accounts.set_password(roles_file, "Dana", a_hash)  # any spelling of the identity
    after = roles_file.read_text().splitlines(keepends=True)
    changed = [i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    assert [before[i] for i in changed] == ["  dana: {name: Dana Kim, roles: [support-manager]}\n"]
    assert (
        after[changed[0]] == f"  dana: {{name: Dana Kim, roles: [support-manager], password: '{a_hash}'}}\n"
    )
    account = YamlRoleDirectory(roles_file).account("dana")
    assert account is not None
    assert verify_password(PASSWORD, account.password_hash or "")

    again = hash_password(PASSWORD)  # a second passwd replaces the hash in place
    accounts.set_password(roles_file, "dana", again)
    assert roles_file.read_text().count("password:") == 1
    assert f"password: '{again}'" in roles_file.read_text().splitlines()[changed[0]]


def test_the_directory_reads_accounts_by_canonical_identity(tmp_path: Path) -> None:
    path = tmp_path / "roles.yaml"
    path.write_text("users:\n  Alice: {name: Alice Ng, roles: [lead, ops]}\n  bob: {roles: [ops]}\n")
    directory = YamlRoleDirectory(path)
    assert directory.account(" ALICE ") == Account("alice", "Alice Ng", ("lead", "ops"), None)
    assert directory.account("bob") == Account("bob", "", ("ops",), None)
    assert directory.account("nobody") is None
    assert directory.account("a\u200bb") is None  # cannot be an identity: no account, no error
    assert directory.members("ops") == ["Alice", "bob"]  # members() and roles() as they were
    assert directory.roles() == {"lead": 1, "ops": 2}
    path.write_text("users:\n  Alice: {roles: [lead]}\n  alice: {roles: [ops]}\n")
    with pytest.raises(BatonUsageError, match="'Alice' and 'alice' are the same identity"):
        directory.account("alice")


@pytest.mark.parametrize(
    ("user_id", "roles", "password_hash", "problem"),
    [
        ("alice", ["finance"], None, "user 'alice' already exists"),
        ("Zoe", ["finance"], None, "'Zoe' is not in canonical form: use 'zoe'"),
        ("z oe", ["finance"], None, "an identity may not contain spaces"),
        ("zoe\u200b", ["finance"], None, "an identity may not contain U\\+200B"),
        ("zoe", [], None, "at least one role"),
        ("zoe", [" finance"], None, "role ' finance'"),
        ("zoe", ["finance"], PASSWORD, "not an encoded password hash"),
    ],
)
def test_add_user_refuses_and_leaves_the_file_unchanged(
    roles_file: Path, user_id: str, roles: list[str], password_hash: str | None, problem: str
) -> None:
    before = roles_file.read_bytes()
    with pytest.raises(BatonUsageError, match=problem) as refused:
        accounts.add_user(roles_file, user_id, name="", roles=roles, password_hash=password_hash)
    assert str(roles_file) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert roles_file.read_bytes() == before


def test_set_password_refuses_an_unknown_user(roles_file: Path, a_hash: str) -> None:
    before = roles_file.read_bytes()
    with pytest.raises(BatonUsageError, match=f"{roles_file}: no user 'nobody'"):
        accounts.set_password(roles_file, "nobody", a_hash)
    assert roles_file.read_bytes() == before


def test_a_file_that_does_not_load_is_not_edited(roles_file: Path, a_hash: str) -> None:
    roles_file.write_text("users:\n  alice: {roles: [x], rolez: [y]}\n")
    with pytest.raises(BatonUsageError, match="rolez"):
        accounts.set_password(roles_file, "alice", a_hash)
    assert roles_file.read_text() == "users:\n  alice: {roles: [x], rolez: [y]}\n"


def test_yaml_11_words_are_quoted_so_they_read_back_as_text(roles_file: Path) -> None:
    accounts.add_user(roles_file, "no", name="yes", roles=["on", "1e3"], password_hash=None)
    assert roles_file.read_text().endswith("  'no': {name: 'yes', roles: ['on', '1e3']}\n")
    assert YamlRoleDirectory(roles_file).account("no") == Account("no", "yes", ("on", "1e3"), None)


def test_block_style_entries_and_comments_are_kept(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "roles.yaml"
    text = (
        "# who may approve\n"
        "users:\n"
        "  alice: {name: Alice Ng, roles: [lead]}   # since March\n"
        "  carol:\n"
        "    roles:\n"
        "      - finance\n"
        "\n"
        "# who hears about cases\n"
        "webhooks:                       # optional\n"
        "  finance: [https://chat.example.com/hooks/finance]\n"
    )
    path.write_text(text)
    accounts.set_password(path, "carol", a_hash)
    accounts.add_user(path, "zoe", name="", roles=["finance"], password_hash=None)
    assert path.read_text() == text.replace(
        "  carol:\n    roles:\n      - finance\n",
        f"  carol:\n    password: '{a_hash}'\n    roles:\n      - finance\n  zoe:\n    roles: [finance]\n",
    )


@pytest.mark.parametrize(
    ("text", "added"),
    [
        ("users: {}\n", "users:\n  zoe: {roles: [finance]}\n"),
        (
            "users:\n  al: {roles: [x]}\r\n# end\r\n",
            "users:\n  al: {roles: [x]}\r\n  zoe: {roles: [finance]}\r\n# end\r\n",
        ),
        (
            "users:\n    al:\n        name: |\n            Al\n\n# end\n",
            "users:\n    al:\n        name: |\n            Al\n    zoe:\n        roles: [finance]\n\n# end\n",
        ),
        ("users:\n  al: {roles: [x]}", "users:\n  al: {roles: [x]}\n  zoe: {roles: [finance]}\n"),
    ],
)
def test_a_user_is_added_below_the_last_in_other_layouts(tmp_path: Path, text: str, added: str) -> None:
    path = tmp_path / "roles.yaml"
    path.write_bytes(text.encode())
    accounts.add_user(path, "zoe", name="", roles=["finance"], password_hash=None)
    assert path.read_bytes().decode() == added


def test_the_file_keeps_its_mode_and_a_symlink_stays_a_link(tmp_path: Path, roles_file: Path) -> None:
    roles_file.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(roles_file)
    accounts.add_user(link, "zoe", name="", roles=["finance"], password_hash=None)
    assert link.is_symlink()
    assert stat.S_IMODE(roles_file.stat().st_mode) == 0o640
    assert "zoe: {roles: [finance]}" in roles_file.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_file_changed_during_the_edit_is_not_overwritten(
    roles_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads_back = YamlRoleDirectory

    def someone_else_edits(path: Path) -> YamlRoleDirectory:
        if path != roles_file:  # the check of the new file: meanwhile, someone edits the old one
            roles_file.write_text(roles_file.read_text() + "  yan: {roles: [finance]}\n")
        return reads_back(path)

    monkeypatch.setattr(accounts, "YamlRoleDirectory", someone_else_edits)
    with pytest.raises(BatonUsageError, match="changed by someone else"):
        accounts.add_user(roles_file, "zoe", name="", roles=["finance"], password_hash=None)
    assert "yan" in roles_file.read_text()
    assert "zoe" not in roles_file.read_text()


# -- baton user, as an operator runs it --------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> Path:
    target = tmp_path / "refunds"
    shutil.copytree(REFUNDS, target, ignore=shutil.ignore_patterns(".baton", "__pycache__"))
    return target


def baton(app: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    return subprocess.run(
        [BATON, "--app", str(app), "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=app.parent,
        check=False,
        timeout=60,
    )


def test_baton_user_add_and_passwd(app: Path) -> None:
    roles_file = app / "roles.yaml"
    added = baton(app, "add", "zoe", "--role", "finance", "--name", "Zoe Li", "--password-stdin",
                  stdin=PASSWORD + "\n")  # fmt: skip
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == f"baton: user zoe added to {roles_file} with roles finance\n"
    account = YamlRoleDirectory(roles_file).account("zoe")
    assert account is not None
    assert (account.name, account.roles) == ("Zoe Li", ("finance",))
    assert verify_password(PASSWORD, account.password_hash or "")

    changed = baton(app, "passwd", "Dana", "--password-stdin", stdin="another long password\r\n")
    assert (changed.returncode, changed.stderr) == (0, "")
    assert changed.stdout == f"baton: password set for dana in {roles_file}\n"
    dana = YamlRoleDirectory(roles_file).account("dana")
    assert dana is not None
    assert verify_password("another long password", dana.password_hash or "")
    for output in (added.stdout, changed.stdout):
        assert "scrypt" not in output
        assert "password" not in output.replace("password set", "")


@pytest.mark.parametrize(
    ("args", "stdin", "problem"),
    [
        (("add", "alice", "--role", "finance", "--password-stdin"), PASSWORD, "user 'alice' already exists"),
        (("passwd", "nobody", "--password-stdin"), PASSWORD, "no user 'nobody'"),
        (("add", "zoe", "--role", "finance", "--password-stdin"), "too short\n", "at least 12 characters"),
        (("add", "zoe x", "--role", "finance", "--password-stdin"), PASSWORD, "may not contain spaces"),
    ],
)
def test_baton_user_refusals_are_one_line_and_change_nothing(
    app: Path, args: tuple[str, ...], stdin: str, problem: str
) -> None:
    before = (app / "roles.yaml").read_bytes()
    ran = baton(app, *args, stdin=stdin)
    assert ran.returncode == 2
    assert ran.stdout == ""
    assert ran.stderr.startswith("baton: ")
    assert ran.stderr.count("\n") == 1
    assert problem in ran.stderr
    assert "Traceback" not in ran.stderr
    assert PASSWORD not in ran.stderr
    assert (app / "roles.yaml").read_bytes() == before
