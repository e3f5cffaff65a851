"""The ``baton`` CLI as a user runs it: a subprocess against the session's dev server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode

from baton.scenario import wait_for_approval
from tests.conftest import REFUNDS_APP, Running, refund, refund_spec

BATON = str(Path(sys.executable).parent / "baton")
REFERENCE_TEXT = refund_spec().read_text()


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def baton(on_dev: Running, *args: str) -> Ran:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": on_dev.client.service_client.config.target_host,
        "BATON_TASK_QUEUE": on_dev.settings.task_queue,
        "BATON_HOME": str(on_dev.settings.home),
        "BATON_APP": str(REFUNDS_APP.root),
        "BATON_ROLES_FILE": str(on_dev.settings.roles_file),
    }
    proc = await asyncio.create_subprocess_exec(
        BATON, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def write(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


async def test_validate_ok_and_every_problem(on_dev: Running, tmp_path: Path) -> None:
    ok = await baton(on_dev, "validate", "refund-request")
    assert (ok.code, ok.out) == (0, "ok\n")
    text = REFERENCE_TEXT.replace("- step: policy", "- step: policy\n    agent: polcy")
    bad = await baton(
        on_dev, "validate", write(tmp_path, "bad.yaml", text.replace("timeout: 4h", "timeout: -1s"))
    )
    assert bad.code == 2
    # Shape problems are all reported first; cross-references are checked once the shape is right.
    assert bad.err.strip().splitlines() == [
        f"{tmp_path}/bad.yaml: ladders.standard[0].timeout (line 75): Value error, "
        "'-1s' is not a duration like 500ms, 30s, 4h or 1h30m"
    ]
    as_json = await baton(on_dev, "validate", "--json", write(tmp_path, "bad2.yaml", text))
    assert as_json.code == 2
    assert json.loads(as_json.out)["problems"] == ["flow[2].agent (line 48): unknown agent 'polcy'"]


async def test_diagram_prints_mermaid(on_dev: Running) -> None:
    ran = await baton(on_dev, "diagram", "refund-request")
    assert ran.code == 0
    assert ran.out.startswith("flowchart TD")
    assert "ladder_finance" in ran.out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"order_id": "ORD-1001", "requested_amount": -5, "reason": "defective"}',
         ["customer_id: Field required", "requested_amount: Input should be greater than or equal to 0"]),
        ('{"order_id": "ORD-1001",\n "customer_id": "CUS-001",\n "requested_amount": 5,,}', ["line 3"]),
        ('["not", "an", "object"]', ["expected a JSON object"]),
    ],
)  # fmt: skip
async def test_bad_case_file_is_refused_before_anything_starts(
    on_dev: Running, tmp_path: Path, content: str, expected: list[str]
) -> None:
    case_id = f"never-{on_dev.settings.task_queue}"
    ran = await baton(
        on_dev, "start", "refund-request", "--case", write(tmp_path, "case.json", content), "--id", case_id
    )
    assert ran.code == 2
    for fragment in expected:
        assert fragment in ran.err
    with pytest.raises(RPCError) as caught:
        await on_dev.client.get_workflow_handle(case_id).describe()
    assert caught.value.status == RPCStatusCode.NOT_FOUND


async def test_start_approve_status_audit(on_dev: Running, tmp_path: Path) -> None:
    case_file = write(tmp_path, "case.json", json.dumps(refund("ORD-1002", "CUS-002", 249.0)))
    async with on_dev.worker():
        started = await baton(on_dev, "start", "refund-request", "--case", case_file, "--as", "bob", "--json")
        assert started.code == 0, started.err
        case_id = json.loads(started.out)["case_id"]
        waiting = await wait_for_approval(on_dev.baton, case_id)
        assert waiting.awaiting is not None
        assert waiting.awaiting.proposal is not None
        status = await baton(on_dev, "status", case_id)
        assert "waiting: support-lead (ladder standard, rung 1/2)" in status.out
        digest = waiting.awaiting.proposal[:12]
        refused = await baton(on_dev, "approve", case_id, "--as", "bob", "--proposal", digest)  # an update
        assert (refused.code, refused.err) == (
            2,
            "baton: refused: separation of duties: bob submitted this case\n",
        )
        signalled = await baton(on_dev, "approve", case_id, "--as", "bob", "--signal")
        assert signalled.code == 0  # a signal is fire and forget: the case records the refusal
        approved = await baton(on_dev, "approve", case_id, "--as", "alice", "--comment", "ok")
        assert approved.out == f"{case_id}: approved by alice (support-lead)\n"
        result = await on_dev.baton.result(case_id)
        assert result.outcome.value == "actioned"
        done = await baton(on_dev, "status", "--json", case_id)
        assert json.loads(done.out)["outcome"] == "actioned"
        audit = await baton(on_dev, "audit", case_id)
    assert "refused" in audit.out
    assert "separation of duties: bob submitted this case" in audit.out
    assert "approved by alice (support-lead): ok" in audit.out


async def test_start_wait_reports_outcome(on_dev: Running, tmp_path: Path) -> None:
    case_file = write(tmp_path, "case.json", json.dumps(refund("ORD-1001", "CUS-001", 20.0)))
    async with on_dev.worker():
        ran = await baton(on_dev, "start", "refund-request", "--case", case_file, "--wait")
    assert ran.code == 0, ran.err
    assert ": actioned (decided by rules)" in ran.out
    assert "intake → drafter → policy → auto → action" in ran.out


async def test_unknown_case_is_a_usage_error(on_dev: Running) -> None:
    ran = await baton(on_dev, "status", "no-such-case")
    assert ran.code == 2
    assert "no case 'no-such-case'" in ran.err


async def test_unreachable_server_is_a_clear_runtime_error(tmp_path: Path) -> None:
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    proc = await asyncio.create_subprocess_exec(
        BATON, "status", "x", env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert b"cannot reach Temporal at 127.0.0.1:1" in err


async def test_pending_and_request_changes_from_the_command_line(on_dev: Running, tmp_path: Path) -> None:
    case_file = write(tmp_path, "case.json", json.dumps(refund("ORD-1014", "CUS-010", 120.0)))
    async with on_dev.worker():
        started = await baton(on_dev, "start", "refund-request", "--case", case_file, "--as", "bob")
        case_id = started.out.strip()
        await wait_for_approval(on_dev.baton, case_id)
        for _ in range(50):  # visibility is eventually consistent
            listed = await baton(on_dev, "pending", "--role", "support-lead", "--json")
            mine = [c for c in json.loads(listed.out) if c["case_id"] == case_id]
            if mine:
                break
            await asyncio.sleep(0.2)
        assert mine[0]["amount"] == 120.0
        assert mine[0]["summary"] == "refund 120 on ORD-1014 (defective)"
        table = await baton(on_dev, "pending", "--role", "support-lead")
        assert case_id in table.out
        assert "refund 120 on ORD-1014" in table.out
        none = await baton(on_dev, "pending", "--role", "nobody-has-this-role")
        assert none.out == "nothing waiting for nobody-has-this-role\n"
        missing = await baton(on_dev, "request-changes", case_id, "--as", "alice")
        assert missing.code == 2  # --feedback is required
        changed = await baton(
            on_dev, "request-changes", case_id, "--as", "alice", "--feedback", "refund at most 40"
        )
        assert changed.out == f"{case_id}: changes requested by alice (support-lead)\n"
        result = await on_dev.baton.result(case_id)
    assert result.handoffs["drafter"]["amount"] == 40.0


async def test_audit_verify_names_the_tampered_line(on_dev: Running, tmp_path: Path) -> None:
    from baton.auditlog import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    log.append([(f"k{i}", {"event": {"seq": i, "detail": f"event {i}"}}) for i in range(1, 6)])
    good = await baton(on_dev, "audit", "verify", str(log.path))
    assert (good.code, good.out) == (0, f"{log.path}: ok: 5 records, chain intact\n")
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:2] + lines[3:]))  # line 3 removed
    bad = await baton(on_dev, "audit", "verify", str(log.path))
    assert bad.code == 1
    assert bad.err.startswith(f"{log.path}: line 3: chain broken")
