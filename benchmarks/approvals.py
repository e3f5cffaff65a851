"""2,000 cases parked on people: worker memory, inbox listing, approve-to-resume latency.

One embedded dev server (with Baton's search attributes), one ``baton worker``
subprocess (so its RSS is the worker's alone), and this process as the client.
The cases are real refund-request cases on their own seeded orders, each waiting
for a support lead. Then:

  - worker RSS (VmRSS now, VmHWM peak) with every case parked;
  - the time ``BatonClient.pending(role="support-lead")`` takes to list them all;
  - approve-to-resume for a sample, one at a time: the ``decide`` update returning
    (the workflow has run the handler and resumed), and approve → case closed
    (the refund written). Each approval names the proposal digest the listing read
    from the inbox memo, so no query precedes it. More cases than the worker's
    workflow cache (1,000 by default) are parked, so some approvals first replay
    their case from history;
  - the history of each approved case once closed: events, markers, bytes.

With ``--signed`` (#14) the same cases run twice over, on two workers and task queues
with their own homes and orders: one with signing off and an unsigned client, one
requiring signed decisions (``BATON_REQUIRE_SIGNED_DECISIONS=1``) with a client holding
the key, which signs each submission and decision. Cases are parked batch by batch in
turn and approved interleaved (alternating which variant goes first), so both see the
same machine at the same time.

Run: ``.venv/bin/python benchmarks/approvals.py [--cases 2000] [--sample 200] [--signed]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refunds"))  # the refund app
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refunds.db import RefundsDB
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from baton import search
from baton.app import App
from baton.client import BatonClient, DecisionRefusedError
from baton.connection import connect
from baton.devserver import DevServer, port_open
from baton.settings import Settings
from baton.signing import KEYS_VARIABLE, REQUIRE_VARIABLE
from baton.spec import SpecSnapshot
from workflows.governed import CHECK_SUBMISSION, SIGNING_PATCH

PORT = 7391

ROOT = Path(__file__).resolve().parents[1]

SIGNING_VARIABLES = (KEYS_VARIABLE, f"{KEYS_VARIABLE}_FILE", REQUIRE_VARIABLE)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def seed_orders(db: RefundsDB, count: int) -> list[str]:
    """``count`` extra delivered orders of 100-400, so every case needs a support lead."""
    db.reset()
    ids = [f"ORD-{200000 + n}" for n in range(count)]
    db.add_orders({oid: 100 + n % 300 for n, oid in enumerate(ids)}, days_ago=3)
    return ids


async def park_batch(v: Variant, spec: SpecSnapshot, batch: int) -> None:
    """Start the variant's next 100 cases, one per seeded order, each to wait for a support lead."""
    v.ids += await asyncio.gather(
        *(
            v.baton.start_case(
                spec,
                {
                    "order_id": o,
                    "customer_id": "CUS-001",
                    "requested_amount": 100 + (batch + i) % 300,
                    "reason": "defective",
                },
                submitted_by="bench",
            )
            for i, o in enumerate(v.orders[batch : batch + 100])
        )
    )


async def wait_parked(temporal: Client, total: int) -> None:
    """Until ``total`` cases wait on a support lead (visibility catches up)."""
    query = f"{search.STAGE.name} = '{search.AWAITING}' AND {search.AWAITING_ROLE.name} = 'support-lead'"
    while (await temporal.count_workflows(query)).count < total:
        await asyncio.sleep(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    """Quartiles, p99 and max: approvals are bimodal (a cached case, or one replayed first)."""
    cuts = ", ".join(f"p{round(q * 100)} {percentile(values, q):.0f} ms" for q in (0.25, 0.5, 0.75, 0.99))
    return f"{cuts}, max {max(values):.0f} ms"


@dataclasses.dataclass
class Variant:
    """One worker subprocess, its task queue, home and orders, and the client that steers it."""

    name: str
    keys: str | None
    """``BATON_DECISION_KEYS`` for the worker (which then requires signing) and the client."""
    home: Path
    settings: Settings
    orders: list[str]
    worker: subprocess.Popen[bytes] | None = None
    client: BatonClient | None = None
    ids: list[str] = dataclasses.field(default_factory=list)
    accepted: list[float] = dataclasses.field(default_factory=list)
    closed: list[float] = dataclasses.field(default_factory=list)

    @property
    def baton(self) -> BatonClient:
        assert self.client is not None
        return self.client

    def worker_env(self, server: DevServer, app: App) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SIGNING_VARIABLES}
        env |= {"TEMPORAL_ADDRESS": server.address, "BATON_TASK_QUEUE": self.settings.task_queue,
                "BATON_HOME": str(self.home), "BATON_APP": str(app.root),
                "REFUNDS_DB": str(self.home / "r.db")}  # fmt: skip
        if self.keys is not None:
            env |= {KEYS_VARIABLE: self.keys, REQUIRE_VARIABLE: "1"}
        return env

    def hold_keys(self, client: BatonClient) -> BatonClient:
        """``client`` with this variant's signing key read (and cached) now; os.environ is left as it was."""
        saved = {name: os.environ.pop(name, None) for name in SIGNING_VARIABLES}
        try:
            if self.keys is not None:
                os.environ[KEYS_VARIABLE] = self.keys
            assert (client.signing_keys is None) == (self.keys is None), self.name
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None)
                if value is not None:
                    os.environ[name] = value
        return client

    def rss(self) -> tuple[float, float]:
        assert self.worker is not None
        return rss_mb(self.worker.pid)


def make_variants(base: Path, app: App, cases: int, signed: bool) -> list[Variant]:
    """Signing off, and (``signed``) signing required with a fresh key, on the same orders."""
    key = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    variants = []
    for name, keys in [("signing off", None), ("signing required", key)][: 2 if signed else 1]:
        home = base / name.replace(" ", "-")
        home.mkdir()
        settings = dataclasses.replace(Settings.for_app(app), home=home, task_queue=f"bench-{uuid.uuid4()}")
        variants.append(Variant(name, keys, home, settings, seed_orders(RefundsDB(home / "r.db"), cases)))
    return variants


async def approve_one(variant: Variant, case_id: str, proposal: str) -> None:
    """Approve ``proposal`` (as listed in the inbox) and wait for the case to close."""
    client = variant.baton
    assert proposal, case_id
    t0 = time.perf_counter()
    receipt = await client.approve(case_id, approver="alice", proposal=proposal)
    t1 = time.perf_counter()
    result = await client.result(case_id)
    t2 = time.perf_counter()
    assert receipt is not None and result.outcome.value == "actioned", result.reason
    signed_by = {e.data.get("signed_by") for e in result.audit} - {None}
    assert signed_by == ({"k1"} if variant.keys else set()), (variant.name, signed_by)
    variant.accepted.append((t1 - t0) * 1000)
    variant.closed.append((t2 - t0) * 1000)


async def refuses_unsigned(signed: Variant, unsigned: BatonClient, proposal: str) -> None:
    """The signed variant's worker does verify: an unsigned decision is refused."""
    try:
        await unsigned.approve(signed.ids[-1], approver="alice", proposal=proposal)
    except DecisionRefusedError as exc:
        refusal = str(exc)
    else:
        refusal = "accepted"
    if "unsigned decision" not in refusal:
        raise AssertionError(f"an unsigned decision with signing required: {refusal}")


def update_task_ms(events: Sequence[HistoryEvent]) -> float:
    """The workflow task that accepted the decide update, scheduled → accepted, on the server's clock."""
    accepted = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    scheduled = [
        e for e in events[: accepted.event_id] if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    ]
    return (accepted.event_time.ToNanoseconds() - scheduled[-1].event_time.ToNanoseconds()) / 1e6


async def history_rows(variant: Variant, case_ids: list[str]) -> list[str]:
    """Events, markers (local activities and patches) and bytes of each closed case's history,
    how many of its markers are signing's (the patch and the ``baton.check_submission`` check),
    and the worker's side of each approval (:func:`update_task_ms`: with the replay of an
    evicted case, without the client's round trips)."""
    counts, markers, signing, sizes, task = [], [], [], [], []
    for case_id in case_ids:
        events = (await variant.baton.temporal.get_workflow_handle(case_id).fetch_history()).events
        recorded = [
            b"".join(p.data for d in e.marker_recorded_event_attributes.details.values() for p in d.payloads)
            for e in events
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        ]
        counts.append(len(events))
        markers.append(len(recorded))
        signing.append(sum(SIGNING_PATCH.encode() in m or CHECK_SUBMISSION.encode() in m for m in recorded))
        sizes.append(sum(e.ByteSize() for e in events))
        task.append(update_task_ms(events))
    mean_size = statistics.mean(sizes)
    return [
        f"history per closed case [{variant.name}] (n={len(case_ids)}): {span(counts)} events, "
        f"{span(markers)} markers ({span(signing)} of them signing's), {mean_size:.0f} bytes mean",
        f"update's workflow task, scheduled → accepted [{variant.name}]: {spread(task)}",
    ]


def span(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}–{max(values)}"


async def main(cases: int, sample: int, port: int = PORT, signed: bool = False) -> None:
    if port_open("127.0.0.1", port) or port_open("127.0.0.1", port + 1000):
        raise SystemExit(f"port {port} or its UI port {port + 1000} is busy")
    base = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    app = App.load(ROOT / "examples" / "refunds")
    variants = make_variants(base, app, cases, signed)
    server = DevServer(base / "temporal.db", port=port, ui_port=port + 1000,
                       search_attributes=search.TYPE_NAMES_BY_NAME)  # fmt: skip
    await server.start()
    for v in variants:
        v.worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "baton"), "worker"],
            env=v.worker_env(server, app), stderr=subprocess.DEVNULL,
        )  # fmt: skip
    total = cases * len(variants)
    try:
        temporal = await connect(address=server.address)
        for v in variants:
            client = BatonClient(temporal, task_queue=v.settings.task_queue, settings=v.settings, app=app)
            v.client = v.hold_keys(client)
        spec = variants[0].baton.load("refund-request")
        started = time.perf_counter()
        for batch in range(0, cases, 100):
            for v in variants:
                await park_batch(v, spec, batch)
        await wait_parked(temporal, total)
        parked = time.perf_counter() - started
        await asyncio.sleep(5)  # let the workers settle (notifications, cache)
        rss = [v.rss() for v in variants]

        listing = []
        for _ in range(3):
            t0 = time.perf_counter()
            found = []
            for v in variants:  # a client lists its own task queue's cases
                found += await v.baton.pending(role="support-lead", limit=total + 10)
            listing.append(time.perf_counter() - t0)
        assert len(found) == total, len(found)

        proposals = {p.case_id: p.proposal for p in found}
        if signed:
            await refuses_unsigned(variants[1], variants[0].baton, proposals[variants[1].ids[-1]])
        chosen = list(range(cases))[:: max(1, cases // sample)][:sample]
        for turn, n in enumerate(chosen):
            for v in variants if turn % 2 == 0 else variants[::-1]:
                await approve_one(v, v.ids[n], proposals[v.ids[n]])
        rss_after = [v.rss() for v in variants]
        histories = [row for v in variants for row in await history_rows(v, [v.ids[n] for n in chosen])]
    finally:
        for v in variants:
            if v.worker is not None:
                v.worker.send_signal(signal.SIGTERM)
                v.worker.wait(timeout=60)
        server.stop()

    each = f" ({len(variants)} variants × {cases})" if signed else ""
    print(f"cases parked: {total}{each} in {parked:.1f}s ({total / parked:.1f} cases/s)")
    for v, (now, peak), (after, peak_after) in zip(variants, rss, rss_after, strict=True):
        print(f"worker RSS [{v.name}] with {cases} parked: {now:.0f} MB (peak {peak:.0f} MB); "
              f"after approvals: {after:.0f} MB (peak {peak_after:.0f} MB)")  # fmt: skip
    print(f"pending --role support-lead ({total} rows): median {statistics.median(listing):.2f}s "
          f"(runs: {', '.join(f'{t:.2f}' for t in listing)})")  # fmt: skip
    for v in variants:
        print(f"approve → update accepted [{v.name}] (n={len(v.accepted)}): {spread(v.accepted)}")
        print(f"approve → case closed, refund written [{v.name}]: {spread(v.closed)}")
    for row in histories:
        print(row)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=2000, help="cases parked (per variant)")
    parser.add_argument("--sample", type=int, default=200, help="cases approved (per variant)")
    parser.add_argument("--port", type=int, default=PORT, help="dev server port (its UI: port + 1000)")
    parser.add_argument(
        "--signed", action="store_true",
        help="also a worker requiring signed decisions, with a signing client: both reported",
    )  # fmt: skip
    options = parser.parse_args()
    asyncio.run(main(options.cases, options.sample, options.port, options.signed))
