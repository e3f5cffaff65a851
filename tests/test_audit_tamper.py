"""The audit log proves completeness and authorship, not just order: the five tamperings.

A chain of hashes catches an edited or reordered record, but records removed from
the end, an emptied log, a forged record with a recomputed hash and a chain
recomputed after a change all leave a valid chain. Signatures (a key only writers
hold) and anchors (each case's newest hash and record count, kept by the engine)
catch the rest; these tests do each tampering to a real log and check that verify
names it, and the cases it touched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.audit import AuditActivities
from baton import auditlog
from baton.audit.anchors import list_anchors
from baton.audit.chain import GENESIS, Anchor, line_of, seal
from baton.audit.keys import AuditKeys, load_audit_keys
from baton.auditlog import AuditLog
from baton.errors import BatonUsageError
from baton.messages import AuditBatch, AuditEvent, AuditKind, AuditReceipt

K1, K2 = b"1" * 32, b"2" * 32
KEYS = AuditKeys({"k2": K2, "k1": K1}, "k2")
BATON = str(Path(sys.executable).parent / "baton")


def events(case: str, first: int, last: int, approver: str = "alice") -> list[tuple[str, dict[str, Any]]]:
    """Records as the activity makes them: keyed by workflow/run/seq, one approval among them."""
    out = []
    for seq in range(first, last + 1):
        kind, actor = ("approved", approver) if seq == 3 else ("handoff", None)
        event = {"seq": seq, "kind": kind, "actor": actor, "detail": f"{case} event {seq}"}
        out.append(
            (f"{case}/run-1/{seq}", {"case_id": case, "workflow_id": case, "run_id": "run-1", "event": event})
        )
    return out


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[Path, dict[str, Anchor]]:
    """Two cases appending in turns, as a worker writes them; the anchors their receipts gave."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, keys=KEYS)
    anchors: dict[str, Anchor] = {}
    for case, first, last in (("case-a", 1, 2), ("case-b", 1, 3), ("case-a", 3, 5), ("case-b", 4, 4)):
        head = log.write(events(case, first, last)).cases[case]
        anchors[case] = Anchor(head.head, head.records)
    return path, anchors


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def reseal(records: list[dict[str, Any]], keys: AuditKeys | None) -> list[str]:
    """What an attacker without the writers' key can do: recompute every hash (and sign with their own key)."""
    prev, out = GENESIS, []
    for record in records:
        body = {k: v for k, v in record.items() if k not in ("prev", "sha256", "sig", "key_id")}
        sealed = seal(body, prev, keys)
        out.append(line_of(sealed))
        prev = sealed["sha256"]
    return out


def test_the_five_tamperings_are_all_detected(
    signed_log: tuple[Path, dict[str, Anchor]], tmp_path: Path
) -> None:
    path, anchors = signed_log
    original = lines(path)
    assert auditlog.verify(path, keys=KEYS, anchors=anchors).ok
    tampered = tmp_path / "tampered.jsonl"

    def verify(new_lines: list[str]) -> auditlog.Verdict:
        tampered.write_text("".join(new_lines))
        return auditlog.verify(tampered, keys=KEYS, anchors=anchors)

    detected: dict[str, str] = {}

    # 1. Delete the last two records: a valid, shorter chain; the anchors name the cases.
    verdict = verify(original[:-2])
    assert verdict.problem is None  # the chain alone cannot tell
    assert [gap.case for gap in verdict.missing] == ["case-a", "case-b"]
    assert str(verdict) == "records missing for 2 case(s): case-a, case-b"
    detected["delete last records"] = str(verdict)

    # 2. Empty the file: every anchored case is missing.
    verdict = verify([])
    assert not verdict.ok
    assert {gap.case: gap.found for gap in verdict.missing} == {"case-a": 0, "case-b": 0}
    detected["empty the file"] = str(verdict)

    # 3. Append a forged record with a correctly recomputed chain hash: no valid signature.
    last = json.loads(original[-1])
    forged = {"key": "case-b/run-1/5", "case_id": "case-b", "workflow_id": "case-b", "run_id": "run-1",
              "event": {"seq": 5, "kind": "approved", "actor": "mallory", "detail": "forged"}}  # fmt: skip
    unsigned = line_of(seal(forged, last["sha256"]))
    verdict = verify([*original, unsigned])
    assert (
        str(verdict)
        == f"line {len(original) + 1}: unsigned record after signed ones: written without the writers' key"
    )
    own_key = AuditKeys({"k2": b"m" * 32}, "k2")  # the attacker's own key under the writers' key id
    verdict = verify([*original, line_of(seal(forged, last["sha256"], own_key))])
    assert verdict.problem == "signature does not match: written or changed without the writers' key"
    assert verdict.line == len(original) + 1
    detected["append a forged record"] = str(verdict)

    # 4. Change an approver and recompute the whole chain: signatures and anchors both catch it.
    records = [json.loads(line) for line in original]
    (approval,) = [r for r in records if r["workflow_id"] == "case-a" and r["event"]["kind"] == "approved"]
    approval["event"]["actor"] = "mallory"
    verdict = verify(reseal(records, own_key))
    assert (verdict.line, verdict.problem) == (
        1,
        "signature does not match: written or changed without the writers' key",
    )
    assert [gap.case for gap in verdict.missing] == ["case-a", "case-b"]  # every later hash changed
    assert not any(gap.head_found for gap in verdict.missing)
    stripped = verify(reseal(records, None))  # or with no signatures at all
    assert stripped.problem is not None
    assert stripped.problem.startswith("no record is signed, though keys were given")
    assert [gap.case for gap in stripped.missing] == ["case-a", "case-b"]
    detected["recompute the chain after changing an approver"] = str(verdict)

    # 5. Edit a record in the middle: its hash no longer matches.
    edited = original.copy()
    edited[3] = edited[3].replace("event 2", "event 2, edited")
    verdict = verify(edited)
    assert str(verdict).startswith("line 4: record changed: its hash does not match its content")
    detected["edit a record in the middle"] = str(verdict)

    assert len(detected) == 5
    print("\n".join(f"detected {name}: {why}" for name, why in detected.items()))


def test_anchors_alone_name_the_cases_even_without_keys(signed_log: tuple[Path, dict[str, Anchor]]) -> None:
    path, anchors = signed_log
    path.write_text("".join(lines(path)[:-1]))  # case-b's newest record removed
    verdict = auditlog.verify(path, anchors=anchors)
    (gap,) = verdict.missing
    assert gap.case == "case-b"
    assert str(gap).startswith(
        f"case-b: its newest record the engine saw ({anchors['case-b'].head[:12]}) is not in"
    )
    assert "signatures not checked" in verdict.notes[0]
    assert auditlog.verify(path, anchors={"case-a": anchors["case-a"]}).ok  # case-a is whole
    assert auditlog.verify(path, anchors={"old-case": Anchor("", 0)}).ok  # nothing anchored: nothing claimed


def test_unsigned_logs_say_forgery_is_not_detectable(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", keys=None)
    log.append(events("c", 1, 3))
    verdict = log.verify()
    assert (verdict.ok, str(verdict)) == (True, "ok: 3 records, chain intact")  # unchanged message
    assert verdict.notes == ("unsigned: forgery not detectable; set BATON_AUDIT_KEYS",)
    assert all("sig" not in r for r in log.read())


def test_signing_keys_rotate_like_the_codecs(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path, keys=AuditKeys({"k1": K1}, "k1")).append(events("c", 1, 2))  # before rotation
    AuditLog(path, keys=KEYS).append(events("c", 3, 4))  # k2 first: new records signed with it
    assert [r["key_id"] for r in auditlog.read(path)] == ["k1", "k1", "k2", "k2"]
    assert auditlog.verify(path, keys=KEYS).ok
    dropped = auditlog.verify(path, keys=AuditKeys({"k2": K2}, "k2"))  # k1 removed too early
    assert dropped.line == 1
    assert dropped.problem is not None
    assert dropped.problem.startswith("signed with key 'k1', which the verifier lacks")


def test_an_unsigned_prefix_before_keys_were_set_is_noted_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path, keys=None).append(events("c", 1, 2))
    AuditLog(path, keys=KEYS).append(events("c", 3, 3))
    verdict = auditlog.verify(path, keys=KEYS)
    assert verdict.ok
    assert verdict.notes == ("the first 2 records are unsigned (written before keys were set)",)


def test_keys_load_from_the_environment_or_a_file(tmp_path: Path) -> None:
    b64 = {k: base64.b64encode(v).decode() for k, v in (("k2", K2), ("k1", K1))}
    keys = load_audit_keys({"BATON_AUDIT_KEYS": f"k2:{b64['k2']}, k1:{b64['k1']}"})
    assert keys is not None
    assert keys.current == "k2"
    assert dict(keys.keys) == {"k2": K2, "k1": K1}
    assert load_audit_keys({}) is None
    file = tmp_path / "keys.json"
    file.write_text(json.dumps({"current": "k1", "keys": b64}))
    from_file = load_audit_keys({"BATON_AUDIT_KEYS_FILE": str(file)})
    assert from_file is not None
    assert from_file.current == "k1"
    for bad, message in (
        ("k2", "BATON_AUDIT_KEYS must be 'id:base64key[,id:base64key...]'"),
        ("k2:not base64!", "BATON_AUDIT_KEYS: key 'k2' is not valid base64"),
        (
            f"k2:{base64.b64encode(b'short').decode()}",
            "audit keys: key 'k2' has 5 bytes; at least 16 are needed",
        ),
    ):
        with pytest.raises(BatonUsageError) as info:
            load_audit_keys({"BATON_AUDIT_KEYS": bad})
        assert str(info.value) == message


async def test_an_append_returns_the_cases_head_and_record_count(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", keys=KEYS)
    sink = AuditActivities(log)
    now = datetime.now(UTC)
    batch = AuditBatch(case_id="r-1", process="p", workflow_id="r-1", run_id="run",
                       events=[AuditEvent(seq=i, at=now, kind=AuditKind.HANDOFF, detail="x") for i in (1, 2, 3)])  # fmt: skip
    other = batch.model_copy(update={"case_id": "r-2", "workflow_id": "r-2"})
    first, _ = await asyncio.gather(sink.audit_append(batch), sink.audit_append(other))  # one group commit
    newest = [r for r in log.read() if r["workflow_id"] == "r-1"][-1]
    assert first == AuditReceipt(written=3, head=newest["sha256"], records=3)
    assert await sink.audit_append(batch) == AuditReceipt(
        written=0, head=newest["sha256"], records=3
    )  # a retry
    more = batch.model_copy(
        update={"events": [AuditEvent(seq=4, at=now, kind=AuditKind.CASE_CLOSED, detail="x")]}
    )
    receipt = await sink.audit_append(more)
    assert (receipt.written, receipt.records) == (1, 4)
    assert auditlog.verify(log.path, keys=KEYS, anchors={"r-1": (receipt.head, receipt.records)}).ok


@pytest.fixture
async def anchored_case(env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str, str]]:
    """A GovernedProcess run (no worker: it never runs) whose memo holds an anchor, on its own queue."""
    queue, case = f"audit-{uuid.uuid4()}", f"anchored-{uuid.uuid4().hex[:8]}"
    handle = await env.client.start_workflow(
        "GovernedProcess", id=case, task_queue=queue, memo={"audit_head": "ab" * 32, "audit_records": 2}
    )
    old = await env.client.start_workflow("GovernedProcess", id=f"old-{case}", task_queue=queue)  # no anchor
    try:
        for _ in range(100):  # visibility is eventually consistent
            if len([wf async for wf in env.client.list_workflows(f"TaskQueue = '{queue}'")]) == 2:
                break
            await asyncio.sleep(0.1)
        yield env.client, queue, case
    finally:
        await handle.terminate()
        await old.terminate()


async def test_anchors_are_read_from_the_cases_memos(anchored_case: tuple[Client, str, str]) -> None:
    client, queue, case = anchored_case
    found = await list_anchors(client, task_queue=queue)
    assert found.cases == {case: Anchor("ab" * 32, 2)}
    assert (found.runs, found.unanchored, found.unreadable) == (2, 1, [])


async def test_cli_verify_names_the_case_whose_anchored_records_are_missing(
    anchored_case: tuple[Client, str, str], tmp_path: Path
) -> None:
    client, queue, case = anchored_case
    log = AuditLog(tmp_path / "audit.jsonl", keys=None)
    log.append(events("other", 1, 2))
    env = {**os.environ, "TEMPORAL_ADDRESS": client.service_client.config.target_host, "BATON_TASK_QUEUE": queue,
           "BATON_HOME": str(tmp_path)}  # fmt: skip
    env.pop("BATON_AUDIT_KEYS", None)

    async def baton(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(BATON, "audit", "verify", str(log.path), *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await baton()
    assert code == 1
    assert out == ""
    assert f"{log.path}: records missing for 1 case(s): {case}\n" in err
    assert f"  missing: {case}: its newest record the engine saw (abababababab) is not in the log" in err
    assert f"anchors: 1 case(s) on task queue '{queue}'" in err
    assert "baton: note: unsigned: forgery not detectable; set BATON_AUDIT_KEYS" in err
    code, out, err = await baton("--no-temporal")
    assert (code, out) == (0, f"{log.path}: ok: 2 records, chain intact\n")
    code, out, _ = await baton("--json")
    report = json.loads(out)
    assert (code, report["ok"], report["missing"][0]["case"]) == (1, False, case)
