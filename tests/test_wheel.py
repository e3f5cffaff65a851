"""A team's first hour, for real: Baton from a built wheel, `baton init`, and the new app runs.

The wheel is built from this checkout and installed (with its ``testing`` extra) into
a fresh virtual environment; `baton init` writes an app in a temporary directory
outside the checkout. In that app, with no edit and no PYTHONPATH: its own tests pass
on a real Temporal dev server, and `baton validate`, `diagram`, `dev`, `start --wait`
and `approve` work as its README says.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding Baton installed from its wheel; returns its bin directory."""
    where = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(where / "dist"), str(ROOT)])
    [wheel] = (where / "dist").glob("baton-*.whl")
    run([sys.executable, "-m", "venv", str(where / "venv")])
    bin_dir = where / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[testing]"])
    return bin_dir


@pytest.fixture(scope="module")
def project(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`baton init invoices` in a directory outside the checkout."""
    where = tmp_path_factory.mktemp("outside")
    assert not where.is_relative_to(ROOT)
    out = run([str(installed / "baton"), "init", "invoices"], cwd=where)
    assert "wrote app 'invoices'" in out
    return where / "invoices"


def test_the_new_app_passes_its_own_tests(installed: Path, project: Path) -> None:
    out = run([str(installed / "pytest"), "-q", "-p", "no:cacheprovider"], cwd=project)
    assert " passed" in out, out
    assert "failed" not in out, out


def test_the_new_app_runs_from_the_cli_as_its_readme_says(installed: Path, project: Path) -> None:
    baton = str(installed / "baton")
    assert run([baton, "validate"], cwd=project).strip() == "ok"
    assert run([baton, "diagram", "invoices"], cwd=project).startswith("flowchart TD")
    port, ui_port = free_port(), free_port()
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    with dev(baton, project, port, ui_port):
        small = run(
            [baton, "start", "invoices", "--case", "cases/small.json", "--wait"], cwd=project, env=env
        )
        assert "actioned (decided by rules)" in small
        case_id = run([baton, "start", "invoices", "--case", "cases/large.json", "--as", "sam"],
                      cwd=project, env=env).strip()  # fmt: skip
        wait_until_waiting(baton, project, env, case_id)
        refused = run([baton, "approve", case_id, "--as", "mia"], cwd=project, env=env, check=False)
        assert "refused: not authorised: mia lacks role approver" in refused
        shown = json.loads(run([baton, "show", case_id, "--json"], cwd=project, env=env))
        digest = shown["awaiting"]["proposal"][:12]
        approved = run([baton, "approve", case_id, "--as", "alex", "--proposal", digest, "--comment", "ok"],
                       cwd=project, env=env)  # fmt: skip
        assert approved.strip() == f"{case_id}: approved by alex (approver)"
        bad = run([baton, "start", "invoices", "--case", "cases/bad.json"], cwd=project, env=env, check=False)
        assert "case input refused" in bad
        assert "Traceback" not in bad


def run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> str:
    """Run a command as a user would (no PYTHONPATH, no Baton env); stdout and stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "PYTHON", "TEMPORAL_"))}
    done = subprocess.run(
        args, cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{output}")
    return output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dev(baton: str, project: Path, port: int, ui_port: int) -> Iterator[None]:
    """`baton dev --port --ui-port` in the app until the block ends (Ctrl-C, as a person would)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "PYTHON", "TEMPORAL_"))}
    proc = subprocess.Popen(
        [baton, "dev", "--port", str(port), "--ui-port", str(ui_port)],
        cwd=project, env=clean, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C stops both" not in seen:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:  # raw reads: a buffered readline would hide lines already read from select
                chunk = os.read(proc.stdout.fileno(), 65536).decode()
                if not chunk:
                    raise AssertionError(f"baton dev exited {proc.wait()}:\n{seen}")
                seen += chunk
            if time.monotonic() > deadline:
                raise AssertionError(f"baton dev did not come up within 90 s:\n{seen}")
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def wait_until_waiting(baton: str, project: Path, env: dict[str, str], case_id: str) -> None:
    for _ in range(100):
        if "waiting: approver" in run([baton, "status", case_id], cwd=project, env=env):
            return
        time.sleep(0.2)
    raise AssertionError(f"{case_id} never waited for an approver")
