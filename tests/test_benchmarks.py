"""The benchmarks still run end to end, at toy sizes.

They are not tests of speed (figures live in BENCHMARKS.md, never in assertions).
They are here because a benchmark that nobody runs rots: once, cases hung on an
activity the benchmark worker had not registered, and only the next measurement
found out. Each script runs as a subprocess, exactly as documented, and must
finish and print every row it promises.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port whose UI neighbour (``port + 1000``) is free too."""
    for port in range(21000, 40000, 37):
        if bindable(port) and bindable(port + 1000):
            return port
    raise RuntimeError("no free port pair on loopback")


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_llm_concurrency_runs_every_variant() -> None:
    out = run("llm_concurrency.py", "--cases", "3", "--rounds", "1", "--llm-port", str(free_port()))
    for row in ("aiohttp alone", "httpx on httpx", "httpx on aiohttp", "adapter (aiohttp)"):
        assert f"  {row} " in out, row
    for variant in (
        "floor: 3 sleeping activities",
        "floor on a default Worker",
        "baton · aiohttp",
        "baton · httpx pool",
        "floor + no-op action",
        "baton + no-op action · aiohttp",
    ):
        assert f"  {variant} " in out, variant
    assert out.count("LLM connections opened") == 6


def test_overhead_compares_both_shapes() -> None:
    out = run("overhead.py", "--serial", "2", "--concurrent", "4", "--rounds", "1")
    assert "activities: latency ×" in out
    assert "local: latency ×" in out
    assert "| minimal/local+2 |" in out  # the floor with the reference's two bookkeeping local activities
    assert "against the floor with two more local activities: latency ×" in out


def test_approvals_parks_and_approves_with_signing_off_and_required() -> None:
    out = run("approvals.py", "--cases", "6", "--sample", "3", "--signed", "--port", str(free_port()))
    assert "cases parked: 12 (2 variants × 6)" in out
    for variant in ("signing off", "signing required"):
        assert f"worker RSS [{variant}] with 6 parked" in out, variant
        assert f"approve → update accepted [{variant}] (n=3)" in out, variant
        assert f"approve → case closed, refund written [{variant}]" in out, variant
        assert f"history per closed case [{variant}] (n=3)" in out, variant
        assert f"update's workflow task, scheduled → accepted [{variant}]" in out, variant


def test_parallel_reviewers_reads_every_variant() -> None:
    out = run("parallel_reviewers.py", "--cases", "3", "--rounds", "1", "--llm-port", str(free_port()))
    for variant in ("floor: 3 parallel sleeps", "baton · parallel group", "baton · in sequence"):
        assert f"  {variant} " in out, variant
    assert out.count("critical path p50") == 3
    assert out.count("function began in the worker") == 3


def test_gateway_logs_in_lists_and_approves_over_http() -> None:
    port = free_port()
    gateway = next(p for p in range(port + 1, port + 37) if bindable(p))
    out = run(
        "gateway.py", "--cases", "4", "--sample", "2", "--inbox-runs", "2",
        "--port", str(port), "--gateway-port", str(gateway),
    )  # fmt: skip
    assert "`GET /` inbox, 4 waiting** (page 1 of 1, 4 rows; n = 2" in out
    assert "through the gateway**, n = 2 |" in out
    assert "direct (no gateway), n = 2 |" in out
    for row in ("click Approve → case closed", "approve → case closed, direct", "gateway RSS", "machine: "):
        assert row in out, row


def test_scale_out_reports_each_worker_count() -> None:
    out = run("scale_out.py", "--workers", "1,2", "--concurrent", "4", "--rounds", "1")
    assert "| worker processes | cases/s |" in out
    assert "\n| 1 | " in out
    assert "\n| 2 | " in out
    assert "machine: " in out
