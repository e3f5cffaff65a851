"""The Python client API: start cases, decide on them, read their status and audit.

The CLI is a thin layer over this. Every start validates the spec and the case
first and raises before anything reaches Temporal, so a bad input never leaves
a half-made workflow behind.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton.connection import connect
from baton.contracts import check_against, resolve_contract
from baton.errors import BatonUsageError, CaseInputError
from baton.messages import AuditEvent, CaseResult, CaseStart, CaseStatus, HumanDecision
from baton.roles import YamlRoleDirectory
from baton.settings import Settings, resolve_process
from baton.spec import ProcessSpec, SpecSnapshot, load_spec, snapshot_of

WORKFLOW_NAME = "GovernedProcess"


def prepare_case(spec: ProcessSpec, case: Any) -> dict[str, Any]:
    """Validate ``case`` against the spec's input contract; raise CaseInputError naming fields."""
    if not isinstance(case, dict):
        raise CaseInputError([f"(case): expected a JSON object, got {type(case).__name__}"])
    checked, problems = check_against(resolve_contract(spec.input), case)
    if checked is None:
        raise CaseInputError(problems)
    return checked


class BatonClient:
    """Start and steer governed cases on one Temporal namespace and task queue."""

    def __init__(self, client: Client, *, task_queue: str, settings: Settings | None = None) -> None:
        self.temporal = client
        self.task_queue = task_queue
        self.settings = settings or Settings()

    @classmethod
    async def connect(
        cls,
        *,
        address: str | None = None,
        namespace: str | None = None,
        settings: Settings | None = None,
    ) -> BatonClient:
        """Connect using Temporal's environment variables (see ``baton.connection``)."""
        settings = settings or Settings()
        client = await connect(address=address, namespace=namespace)
        return cls(client, task_queue=settings.task_queue, settings=settings)

    def load(self, process: str | Path) -> SpecSnapshot:
        """Load and validate a spec by name or path, checking ladder roles against the directory."""
        path = resolve_process(str(process))
        roles = YamlRoleDirectory(self.settings.roles_file).roles()
        return snapshot_of(load_spec(path, roles=roles), source=str(path))

    async def start_case(
        self,
        process: str | Path | SpecSnapshot,
        case: Any,
        *,
        case_id: str | None = None,
        submitted_by: str = "anonymous",
    ) -> str:
        """Validate, then start one case; returns its id (the workflow id).

        Raises:
            SpecError: the spec is invalid (nothing started).
            CaseInputError: the case does not match the input contract (nothing started).
            BatonUsageError: the case id is already in use.
        """
        snapshot = process if isinstance(process, SpecSnapshot) else self.load(process)
        spec = snapshot.spec
        checked = prepare_case(spec, case)
        case_id = case_id or f"{spec.process}-{uuid.uuid4().hex[:12]}"
        try:
            await self.temporal.start_workflow(
                WORKFLOW_NAME,
                CaseStart(case_id=case_id, spec=snapshot, case=checked, submitted_by=submitted_by),
                id=case_id,
                task_queue=self.task_queue,
                memo={
                    "process": spec.process,
                    "spec_version": spec.version,
                    "spec_sha256": snapshot.sha256,
                    "submitted_by": submitted_by,
                },
                static_summary=f"{spec.process} v{spec.version} · case {case_id}",
                static_details=spec.description or None,
            )
        except WorkflowAlreadyStartedError:
            raise BatonUsageError(f"case id {case_id!r} is already in use") from None
        return case_id

    def handle(self, case_id: str) -> WorkflowHandle[Any, CaseResult]:
        """The Temporal handle of a case."""
        return self.temporal.get_workflow_handle(case_id, result_type=CaseResult)

    async def result(self, case_id: str) -> CaseResult:
        """Wait for the case to end and return its result."""
        return await self.handle(case_id).result()

    async def status(self, case_id: str) -> CaseStatus:
        """The case's live status (stage, what it waits for, outcome)."""
        status: CaseStatus = await self._query(case_id, "status", CaseStatus)
        return status

    async def audit(self, case_id: str) -> list[AuditEvent]:
        """The case's audit trail so far."""
        events: list[AuditEvent] = await self._query(case_id, "audit", list[AuditEvent])
        return events

    async def approve(self, case_id: str, *, approver: str, comment: str = "") -> None:
        """Send an ``approve`` signal as ``approver`` (refused by the case if unauthorised)."""
        await self._decide(case_id, "approve", HumanDecision(approver=approver, comment=comment))

    async def reject(self, case_id: str, *, approver: str, reason: str) -> None:
        """Send a ``reject`` signal as ``approver`` with the reason."""
        await self._decide(case_id, "reject", HumanDecision(approver=approver, comment=reason))

    async def _decide(self, case_id: str, signal: str, decision: HumanDecision) -> None:
        try:
            await self.handle(case_id).signal(signal, decision)
        except RPCError as exc:
            raise _not_found(case_id, exc) from None

    async def _query(self, case_id: str, name: str, result_type: Any) -> Any:
        try:
            return await self.handle(case_id).query(name, result_type=result_type)
        except RPCError as exc:
            raise _not_found(case_id, exc) from None


def _not_found(case_id: str, exc: RPCError) -> Exception:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return BatonUsageError(f"no case {case_id!r}")
    if exc.status == RPCStatusCode.FAILED_PRECONDITION:
        return BatonUsageError(f"case {case_id!r} has ended: {exc.message}")
    return exc
