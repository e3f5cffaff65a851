"""Signed decisions (#14 item 3): with signing required, only a trusted sender's key decides."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton import signing
from baton.client import DecisionRefusedError
from baton.errors import BatonUsageError
from baton.messages import AuditKind, CaseResult, Outcome
from baton.scenario import wait_for_approval
from baton.signing import DecisionKeys, SigningPolicy, create_dev_keys, new_ed25519_pair
from baton.spec import SpecSnapshot
from tests.conftest import Running, refund

K1, K2 = b"k" * 32, b"q" * 32


def ring(**keys: bytes) -> str:
    """A ``BATON_DECISION_KEYS`` value, the first key current."""
    return ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys.items())


@pytest.fixture
def required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Workers in this test require signatures by k2 or k1; the policy is restored after."""
    signing.install(SigningPolicy(required=True, keys=DecisionKeys({"k2": K2, "k1": K1}, "k2")))
    monkeypatch.delenv("BATON_DECISION_KEYS", raising=False)
    yield
    signing.install(SigningPolicy())


async def test_unsigned_decisions_are_refused_and_signed_ones_recorded_with_their_key(
    on_dev: Running, required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with on_dev.worker():
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k2=K2))
        signer = on_dev.baton  # the gateway's client: holds the current key
        case_id = await signer.start_case(
            "refund-request", refund("ORD-1002", "CUS-002", 249.0), submitted_by="bob"
        )
        await wait_for_approval(signer, case_id)
        monkeypatch.delenv("BATON_DECISION_KEYS")
        anyone = on_dev.baton  # a namespace client typing --as alice
        with pytest.raises(DecisionRefusedError, match="unsigned decision"):
            await anyone.approve(case_id, approver="alice")
        await anyone.approve(case_id, approver="alice", signal=True)  # recorded as refused
        await signer.approve(case_id, approver="alice", comment="checked")
        result = await signer.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    assert result.decided_by == "alice"
    submitted = next(e for e in result.audit if e.kind == AuditKind.CHECK_PASSED)
    assert submitted.detail == "submission by bob signed with key k2"
    refused = [e.detail for e in result.audit if e.kind == AuditKind.REFUSED]
    assert refused == [
        "approve signal by alice refused: unsigned decision: this deployment accepts only signed "
        "decisions, sent through the decide update"
    ]
    approved = next(e for e in result.audit if e.kind == AuditKind.APPROVED)
    assert approved.data["signed_by"] == "k2"


async def test_a_rotated_out_key_and_a_forged_signature_are_refused(
    on_dev: Running, required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with on_dev.worker():
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k1=K1))  # the older key still verifies
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        await wait_for_approval(on_dev.baton, case_id)
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k0=b"z" * 32))  # rotated out long ago
        with pytest.raises(DecisionRefusedError, match="key 'k0', which the workers do not trust"):
            await on_dev.baton.approve(case_id, approver="alice")
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k2=b"x" * 32))  # the right id, the wrong key
        with pytest.raises(DecisionRefusedError, match="bad signature"):
            await on_dev.baton.approve(case_id, approver="alice")
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k1=K1))
        await on_dev.baton.approve(case_id, approver="alice")
        assert (await on_dev.baton.result(case_id)).outcome == Outcome.ACTIONED


async def test_an_unsigned_submission_closes_before_any_agent_runs(on_dev: Running, required: None) -> None:
    async with on_dev.worker():
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        result = await on_dev.baton.result(case_id)
    assert result.outcome == Outcome.INVALID_INPUT
    assert result.reason.startswith("unsigned submission")
    assert result.handoffs == {}


def test_dev_keys_are_created_once_private_and_read_by_clients(tmp_path: Path) -> None:
    home = tmp_path
    path = create_dev_keys(home)
    assert path.stat().st_mode & 0o777 == 0o600
    first = DecisionKeys.from_env({}, home)
    assert first is not None
    assert create_dev_keys(home) == path
    again = DecisionKeys.from_env({}, home)
    assert again is not None
    assert again.current == first.current
    assert first.problem(b"m", first.sign(b"m")) is None
    assert first.development  # clients decide on the current proposal with it, and say so
    with pytest.raises(BatonUsageError, match="no BATON_DECISION_PUBLIC_KEYS or BATON_DECISION_KEYS"):
        SigningPolicy.from_env({"BATON_REQUIRE_SIGNED_DECISIONS": "1"}, home)  # a worker never trusts it


async def test_a_case_that_requires_signing_keeps_requiring_it_whatever_the_worker_now_says(
    on_dev: Running, required: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with on_dev.worker():
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k2=K2))
        case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        await wait_for_approval(on_dev.baton, case_id)
        monkeypatch.delenv("BATON_DECISION_KEYS")
        signing.install(SigningPolicy())  # a worker rolled out without the setting, or without keys
        with pytest.raises(
            DecisionRefusedError, match="this worker has no BATON_DECISION_PUBLIC_KEYS or BATON_DECISION_KEYS"
        ):
            await on_dev.baton.approve(case_id, approver="alice")
        signing.install(SigningPolicy(keys=DecisionKeys({"k2": K2}, "k2")))  # keys, but not "required"
        with pytest.raises(DecisionRefusedError, match="unsigned decision"):
            await on_dev.baton.approve(case_id, approver="alice")
        monkeypatch.setenv("BATON_DECISION_KEYS", ring(k2=K2))
        await on_dev.baton.approve(case_id, approver="alice")
        assert (await on_dev.baton.result(case_id)).outcome == Outcome.ACTIONED


async def test_ed25519_workers_verify_with_public_keys_they_cannot_sign_with(
    on_dev: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = (line.split("=", 1)[1] for line in new_ed25519_pair("g1"))
    workers = DecisionKeys.from_env({"BATON_DECISION_PUBLIC_KEYS": public}, Path("/nonexistent"))
    assert workers is not None
    assert not workers.can_sign  # nothing a worker holds can forge an approval
    signing.install(SigningPolicy(required=True, keys=workers))
    try:
        async with on_dev.worker():
            monkeypatch.setenv("BATON_DECISION_SIGNING_KEY", private)  # the gateway's key
            case_id = await on_dev.baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
            await wait_for_approval(on_dev.baton, case_id)
            monkeypatch.delenv("BATON_DECISION_SIGNING_KEY")
            monkeypatch.setenv("BATON_DECISION_PUBLIC_KEYS", public)  # a client with only the public key
            with pytest.raises(DecisionRefusedError, match="unsigned decision"):
                await on_dev.baton.approve(case_id, approver="alice")
            monkeypatch.setenv("BATON_DECISION_SIGNING_KEY", private)
            await on_dev.baton.approve(case_id, approver="alice")
            result = await on_dev.baton.result(case_id)
    finally:
        signing.install(SigningPolicy())
    assert result.outcome == Outcome.ACTIONED
    approved = next(e for e in result.audit if e.kind == AuditKind.APPROVED)
    assert approved.data["signed_by"] == "g1"


async def test_a_case_started_from_a_forged_resume_closes_without_running(on_dev: Running) -> None:
    from temporalio.common import WorkflowIDReusePolicy

    from baton.messages import CaseResult, CaseStart, Resume

    snapshot = on_dev.baton.load("refund-request")
    forged = CaseStart(
        case_id="forged-1",
        case=refund("ORD-1002", "CUS-002", 249.0),
        spec=snapshot,
        resume=Resume(start_at=len(snapshot.spec.flow), outputs={"drafter": {"amount": 9999.0}}),
    )
    async with on_dev.worker():
        handle = await on_dev.client.start_workflow(
            "GovernedProcess", forged, id="forged-1", task_queue=on_dev.settings.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, result_type=CaseResult,
        )  # fmt: skip
        result = await handle.result()
    assert result.outcome == Outcome.INVALID_INPUT
    assert result.reason == "a case cannot be started from a resume"
    assert result.handoffs == {}  # nothing the forger wrote is taken as a handoff
    assert result.action is None


async def run_signed_start(
    on_dev: Running, *, case_id: str, workflow_id: str, spec: SpecSnapshot | None = None
) -> CaseResult:
    """Start GovernedProcess straight from a CaseStart signed by bob (as a forger would), to its result.

    The signature covers ``case_id``, the case and the refund spec's digest; ``spec`` is the
    spec sent with it (default: the refund spec itself).
    """
    from baton.digests import digest
    from baton.messages import CaseStart
    from baton.signing import submission_message

    snapshot = on_dev.baton.load("refund-request")
    case = refund("ORD-1002", "CUS-002", 249.0)
    signed = DecisionKeys({"k2": K2}, "k2").sign(
        submission_message(case_id, "bob", digest(case), snapshot.sha256)
    )
    start = CaseStart(case_id=case_id, case=case, submitted_by="bob", signature=signed, spec=spec or snapshot)
    async with on_dev.worker():
        handle = await on_dev.client.start_workflow(
            "GovernedProcess",
            start,
            id=workflow_id,
            task_queue=on_dev.settings.task_queue,
            result_type=CaseResult,
        )
        result: CaseResult = await handle.result()
    return result


async def test_a_signed_submission_under_another_workflow_id_is_refused(
    on_dev: Running, required: None
) -> None:
    # a captured signed submission, replayed under a new id
    result = await run_signed_start(on_dev, case_id="case-a", workflow_id="case-b")
    assert result.outcome == Outcome.INVALID_INPUT
    assert result.reason == "case id 'case-a' is not the workflow id"


async def test_a_signed_submission_whose_spec_was_changed_after_signing_is_refused(
    on_dev: Running, required: None
) -> None:
    snapshot = on_dev.baton.load("refund-request")
    loosened = snapshot.spec.model_copy(update={"description": "no approval needed"})
    tampered = snapshot.model_copy(update={"spec": loosened})  # the signed digest, another spec
    result = await run_signed_start(on_dev, case_id="case-c", workflow_id="case-c", spec=tampered)
    assert result.outcome == Outcome.INVALID_INPUT
    assert result.reason == "the spec's digest does not match the spec it came with"
    assert result.handoffs == {}  # no agent saw the case
    assert not [e for e in result.audit if e.kind == AuditKind.HANDOFF]
