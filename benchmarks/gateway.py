"""The approval gateway (#15) over real HTTP: the inbox with 2,000 waiting cases, click-to-resumed.

One embedded dev server (with Baton's search attributes), one ``baton worker`` subprocess
requiring signed decisions, and one ``baton serve`` subprocess (so its CPU and RSS are
the gateway's own) holding the same HMAC key (``BATON_DECISION_KEYS``) to sign what it
sends. The roles file is a copy of the refund app's with a password for alice
(support-lead). This process seeds orders, parks the cases (each waiting on a support
lead), and drives the gateway with an httpx client that logs in as alice through the
login form, as a browser would. Then:

  - ``GET /`` (the inbox: first page of 100 rows, the count in the title checked) with
    every case waiting, ``--inbox-runs`` times after one untimed warm-up; beside it, the
    same visibility listing made by this process (``BatonClient.pending``), and the
    handler's own time from the gateway's request log;
  - click-to-resumed for ``--sample`` cases, one at a time: ``GET /cases/{id}`` first (as
    a person reads the case; its form gives ``proposal``, ``decision_id`` and ``csrf``),
    then the timed ``POST /cases/{id}/decide`` until its 303 (the ``decide`` update
    accepted: the case has resumed), then until the case closes (``BatonClient.result``);
  - for comparison, interleaved with those (alternating which goes first), as many other
    cases approved by ``BatonClient.approve`` from this process, signed with the same key
    and naming the proposal digest the listing read. Each is preceded by an untimed
    ``casefile`` read, as the gateway's case page does, so both paths find the case in
    the worker's cache;
  - the gateway's RSS (VmRSS, VmHWM) after the run, and its CPU per request.

Run: ``.venv/bin/python benchmarks/gateway.py [--cases 2000] [--sample 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refunds"))  # the refund app
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refunds.db import RefundsDB

from baton import search
from baton.accounts import set_password
from baton.app import App
from baton.client import BatonClient
from baton.connection import connect
from baton.devserver import DevServer, port_open
from baton.gateway.passwords import hash_password
from baton.gateway.sessions import COOKIE
from baton.gateway.settings import SESSION_KEYS_VARIABLE
from baton.settings import Settings
from baton.signing import KEYS_VARIABLE
from benchmarks.approvals import (
    ROOT,
    SIGNING_VARIABLES,
    Variant,
    approve_one,
    park_batch,
    percentile,
    rss_mb,
    seed_orders,
    wait_parked,
)
from benchmarks.costs import process_cpu

PORT = 7393
GATEWAY_PORT = 8394
USER = "alice"
PASSWORD = "bench: correct horse battery staple"
INBOX = "/"
CASE = "/cases/{case_id}"
DECIDE = "/cases/{case_id}/decide"
BATON = str(Path(sys.executable).parent / "baton")


@dataclass
class Timings:
    """Client-side times (ms) of one kind of request or step, and the gateway's CPU over them."""

    ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def add(self, started: float) -> None:
        self.ms.append((time.perf_counter() - started) * 1000)


def summary(values: list[float], *qs: float) -> str:
    cuts = ", ".join(f"p{round(q * 100)} {percentile(values, q):.0f} ms" for q in qs)
    return f"{cuts}, max {max(values):.0f} ms"


def hidden(html: str, name: str) -> str:
    """The value of a form's hidden input ``name``."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"the page has no {name!r} field"
    return found.group(1)


def flashes(response: httpx.Response) -> list[list[str]]:
    """The one-shot messages the response put in its session cookie (signed, not encrypted)."""
    value = response.cookies.get(COOKIE) or ""
    body = value.split(".")[1] if value.count(".") == 2 else ""
    if not body:
        return []
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return list(data.get("flash", []))


def request_log(path: Path) -> dict[str, list[float]]:
    """The handler's own time (ms) of each request, by route template, from the gateway's log."""
    found: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        if " baton.gateway.requests " in line:
            entry = json.loads(line.split(" baton.gateway.requests ", 1)[1])
            found.setdefault(entry["route"], []).append(float(entry["ms"]))
    return found


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "?",
    )  # fmt: skip
    return f"{os.cpu_count()} cores ({model})"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def tail(log: Path) -> str:
    return "\n".join(log.read_text().splitlines()[-30:])


async def start_gateway(env: dict[str, str], app: App, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``baton --app APP serve --port PORT``, answering ``/healthz``."""
    with log.open("wb") as err:
        process = subprocess.Popen(
            [BATON, "--app", str(app.root), "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as probe:
        for _ in range(300):
            if process.poll() is not None:
                raise SystemExit(f"baton serve exited {process.returncode}:\n{tail(log)}")
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"baton serve did not answer /healthz within 30 s:\n{tail(log)}")


async def login(browser: httpx.AsyncClient) -> None:
    """Log in as alice through the form."""
    page = await browser.get("/login")
    answer = await browser.post(
        "/login", data={"username": USER, "password": PASSWORD, "csrf": hidden(page.text, "csrf")}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/", (answer.status_code, answer.text)


async def time_inbox(browser: httpx.AsyncClient, gateway_pid: int, cases: int, runs: int) -> Timings:
    """``GET /`` ``runs`` times (after one warm-up): the full page, its first 100 rows."""
    timings = Timings()
    for run in range(runs + 1):
        cpu0, t0 = process_cpu(gateway_pid), time.perf_counter()
        page = await browser.get(INBOX)
        if run:
            timings.add(t0)
            timings.cpu_s += process_cpu(gateway_pid) - cpu0
        assert page.status_code == 200, page.status_code
        assert f"({cases}) Inbox" in page.text, re.search(r"<title>(.*)</title>", page.text)
        assert page.text.count('<a href="/cases/') == min(100, cases), page.text.count('<a href="/cases/')
    return timings


async def approve_through_gateway(
    browser: httpx.AsyncClient,
    baton: BatonClient,
    case_id: str,
    page: Timings,
    post: Timings,
    closed: Timings,
) -> None:
    """Read the case page, then click Approve: time the POST until its 303, and until the case closes."""
    shown = await browser.get(CASE.format(case_id=case_id))
    assert shown.status_code == 200, shown.status_code
    page.ms.append(shown.elapsed.total_seconds() * 1000)
    form = {
        "verdict": "approve",
        "comment": "",
        **{name: hidden(shown.text, name) for name in ("proposal", "decision_id", "csrf")},
    }
    t0 = time.perf_counter()
    answer = await browser.post(DECIDE.format(case_id=case_id), data=form)
    post.add(t0)
    result = await baton.result(case_id)
    closed.add(t0)
    assert answer.status_code == 303, answer.status_code
    messages = flashes(answer)
    assert messages and messages[-1][0] == "ok" and messages[-1][1].startswith("You approved"), messages
    assert result.outcome.value == "actioned", result.reason
    signed_by = {e.data.get("signed_by") for e in result.audit} - {None}
    assert signed_by == {"k1"}, signed_by
    assert [(a.decision, a.approver) for a in result.approvals] == [("approve", USER)], result.approvals


async def main(cases: int, sample: int, runs: int, port: int, gateway_port: int) -> None:
    if cases < 2 * sample:
        raise SystemExit(f"--cases {cases} < 2 × --sample {sample}: gateway and direct each approve a sample")
    for busy in (port, port + 1000, gateway_port):
        if port_open("127.0.0.1", busy):
            raise SystemExit(f"port {busy} is busy (the dev server, its UI at port + 1000, the gateway)")
    machine_load = [load()]
    base = Path(tempfile.mkdtemp(prefix="baton-bench-gateway-"))
    app = App.load(ROOT / "examples" / "refunds")
    roles = base / "roles.yaml"
    shutil.copy(app.roles_file, roles)
    set_password(roles, USER, hash_password(PASSWORD))
    home = base / "home"
    home.mkdir()
    key = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    settings = replace(Settings.for_app(app), home=home, task_queue=f"bench-{uuid.uuid4()}", roles_file=roles)
    bench = Variant("signing required", key, home, settings, seed_orders(RefundsDB(home / "r.db"), cases))
    server = DevServer(base / "temporal.db", port=port, ui_port=port + 1000,
                       search_attributes=search.TYPE_NAMES_BY_NAME)  # fmt: skip
    await server.start()
    bench.worker = subprocess.Popen(
        [BATON, "worker"],
        env=bench.worker_env(server, app) | {"BATON_ROLES_FILE": str(roles)}, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{gateway_port}"
    gateway_env = {k: v for k, v in os.environ.items() if k not in SIGNING_VARIABLES} | {
        "TEMPORAL_ADDRESS": server.address, "BATON_TASK_QUEUE": settings.task_queue,
        "BATON_HOME": str(base / "gateway-home"), "BATON_ROLES_FILE": str(roles), KEYS_VARIABLE: key,
        "BATON_GATEWAY_URL": url,
        SESSION_KEYS_VARIABLE: "s1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }  # fmt: skip
    gateway: subprocess.Popen[bytes] | None = None
    gateway_log = base / "gateway.log"
    page, post, closed = Timings(), Timings(), Timings()
    try:
        temporal = await connect(address=server.address)
        baton = bench.hold_keys(
            BatonClient(temporal, task_queue=settings.task_queue, settings=settings, app=app)
        )
        bench.client = baton
        gateway = await start_gateway(gateway_env, app, gateway_port, gateway_log)
        spec = baton.load("refund-request")
        started = time.perf_counter()
        for batch in range(0, cases, 100):
            await park_batch(bench, spec, batch)
        await wait_parked(temporal, cases)
        parked = time.perf_counter() - started
        await asyncio.sleep(5)  # let the worker settle (notifications, cache)
        machine_load.append(load())

        async with httpx.AsyncClient(base_url=url, timeout=60) as browser:
            await login(browser)
            rss_idle = rss_mb(gateway.pid)
            inbox = await time_inbox(browser, gateway.pid, cases, runs)
            listing: list[float] = []
            visibility: list[float] = []
            inbox_query = (  # what pending(roles=["support-lead"]) asks, read without its memo decoding
                f"ExecutionStatus = 'Running' AND {search.STAGE.name} IN ('{search.AWAITING}', "
                f"'{search.HELD}') AND TaskQueue = '{settings.task_queue}' "
                f"AND {search.AWAITING_ROLE.name} IN ('support-lead')"
            )
            for _ in range(max(3, runs // 4)):
                t0 = time.perf_counter()
                found = await baton.pending(roles=["support-lead"], limit=5000)
                listing.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                rows = [wf async for wf in temporal.list_workflows(inbox_query, limit=5000)]
                visibility.append((time.perf_counter() - t0) * 1000)
                assert len(found) == len(rows) == cases, (len(found), len(rows))
            proposals = {p.case_id: p.proposal for p in found}

            chosen = list(range(cases))[:: max(1, cases // (2 * sample))][: 2 * sample]
            cpu_before = process_cpu(gateway.pid)
            for turn, (through, direct) in enumerate(zip(chosen[0::2], chosen[1::2], strict=True)):
                for path in ("gateway", "direct") if turn % 2 == 0 else ("direct", "gateway"):
                    if path == "gateway":
                        await approve_through_gateway(browser, baton, bench.ids[through], page, post, closed)
                    else:
                        case_id = bench.ids[direct]
                        await baton.casefile(case_id)  # as the case page does: the case is in the cache
                        await approve_one(bench, case_id, proposals[case_id])
            post.cpu_s = process_cpu(gateway.pid) - cpu_before
        rss_after = rss_mb(gateway.pid)
        machine_load.append(load())
    finally:
        for process in (gateway, bench.worker):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
        server.stop()

    handled = request_log(gateway_log)
    inbox_handler = handled.get(INBOX, [])[-runs:]
    decide_handler = handled.get(DECIDE, [])
    n = len(post.ms)
    table = [
        ("cases parked (3 agents, directory lookup, notification each)",
         f"{cases} in {parked:.1f} s ({cases / parked:.1f} cases/s)", "—"),
        (f"**`GET /` inbox, {cases} waiting** (page 1 of {-(-cases // 100)}, {min(100, cases)} rows; "
         f"n = {runs} after a warm-up)",
         f"**p50 {percentile(inbox.ms, 0.5):.0f} ms**, {summary(inbox.ms, 0.95)}", "≤ 1 s"),
        ("… of it the gateway's handler (its request log)", summary(inbox_handler, 0.5, 0.95), "—"),
        (f"… the same listing from this process (`pending`, {cases} rows; visibility + memo)",
         f"p50 {statistics.median(listing):.0f} ms (n = {len(listing)}: "
         f"{min(listing):.0f}–{max(listing):.0f} ms)", "—"),
        ("… of that the visibility query alone (`list_workflows`, same query, no memo decoding)",
         f"p50 {statistics.median(visibility):.0f} ms ({min(visibility):.0f}–{max(visibility):.0f} ms)", "—"),
        ("gateway CPU per inbox `GET /`", f"{inbox.cpu_s / runs * 1000:.0f} ms", "—"),
        (f"**click Approve → 303 (update accepted, case resumed), through the gateway**, n = {n}",
         f"**p50 {percentile(post.ms, 0.5):.0f} ms**, {summary(post.ms, 0.25, 0.75, 0.99)}", "p50 ≤ 150 ms"),
        ("… of it the gateway's handler (its request log)", summary(decide_handler, 0.5, 0.99), "—"),
        (f"`BatonClient.approve` → update accepted, direct (no gateway), n = {len(bench.accepted)}",
         f"p50 {percentile(bench.accepted, 0.5):.0f} ms, {summary(bench.accepted, 0.25, 0.75, 0.99)}", "—"),
        ("click Approve → case closed (refund written), through the gateway",
         f"p50 {percentile(closed.ms, 0.5):.0f} ms, {summary(closed.ms, 0.99)}", "—"),
        ("approve → case closed, direct",
         f"p50 {percentile(bench.closed, 0.5):.0f} ms, {summary(bench.closed, 0.99)}", "—"),
        ("`GET /cases/{id}` before each click (not in the figure above; a query to the case)",
         f"p50 {percentile(page.ms, 0.5):.0f} ms, {summary(page.ms, 0.99)}", "—"),
        ("gateway CPU per approval (case page + POST)", f"{post.cpu_s / n * 1000:.0f} ms", "—"),
        ("gateway RSS", f"{rss_idle[0]:.0f} MB logged in, before the inbox; {rss_after[0]:.0f} MB after the "
         f"run (peak {rss_after[1]:.0f} MB)", "—"),
    ]  # fmt: skip
    print(f"machine: {machine()}; load average (1/5/15 min) at start {machine_load[0]}, "
          f"cases parked {machine_load[1]}, end {machine_load[2]}\n")  # fmt: skip
    print("| measure | result | goal |\n|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", type=int, default=2000, help="cases parked, each waiting on a support lead"
    )
    parser.add_argument(
        "--sample", type=int, default=200, help="cases approved by each path (gateway, direct)"
    )
    parser.add_argument("--inbox-runs", type=int, default=20, help="timed GET / of the inbox")
    parser.add_argument("--port", type=int, default=PORT, help="dev server port (its UI: port + 1000)")
    parser.add_argument("--gateway-port", type=int, default=GATEWAY_PORT, help="baton serve's port")
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.sample, options.inbox_runs, options.port, options.gateway_port))
