"""The Python client API: start cases, decide on them, read their status and audit.

The CLI is a thin layer over this. Every start validates the spec and the case
first and raises before anything reaches Temporal, so a bad input never leaves
a half-made workflow behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from temporalio.api.common.v1 import Memo
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import RawValue, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton import search
from baton.catalog import Catalog
from baton.codec import KEYS_HINT, CodecKeyError, is_encrypted
from baton.connection import connect
from baton.contracts import check_against, resolve_contract, validation_problems
from baton.digests import digest
from baton.errors import BatonRuntimeError, BatonUsageError, CaseInputError, SpecError
from baton.identity import IdentityError, canonical
from baton.messages import (
    MAX_ID,
    AuditEvent,
    CaseFile,
    CaseResult,
    CaseStart,
    CaseStatus,
    DecisionReceipt,
    DecisionRequest,
    HumanDecision,
    Verdict,
)
from baton.settings import Settings
from baton.signing import DecisionKeys, decision_message, submission_message
from baton.spec import ProcessSpec, SpecSnapshot
from baton.textbounds import excerpt

if TYPE_CHECKING:
    from baton.app import App
    from baton.wiring import Wiring

WORKFLOW_NAME = "GovernedProcess"
CASE_ID = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_ID - 1}}}$")
"""What a case id may be: it names the case in URLs, logs and the audit log."""
MAX_CASE_BYTES = int(os.environ.get("BATON_MAX_CASE_BYTES", str(256 * 1024)))
"""Cases above this are refused before start (Temporal's limit is 2 MiB per payload)."""


QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a query may wait for a worker to answer (none running: the caller hears so, soon)."""


class DecisionRefusedError(BatonUsageError):
    """The case refused a decision sent as an update; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"refused: {reason}")


@dataclass(frozen=True)
class PendingCase:
    """One line of the inbox: a case waiting on a role."""

    case_id: str
    process: str
    stage: str
    role: str
    started: datetime
    deadline: datetime | None
    amount: float | None
    summary: str
    proposal: str = ""
    """The digest of the proposal a decision must name (``--proposal``), when the case holds one."""
    memo: Memo | None = field(default=None, repr=False, compare=False)
    """The memo as listed, while its summary and proposal are still to be read."""

    @property
    def age_seconds(self) -> float:
        """How long the case has been open."""
        return (datetime.now(UTC) - self.started).total_seconds()


def prepare_case(spec: ProcessSpec, case: Any) -> dict[str, Any]:
    """Validate ``case`` against the spec's input contract; raise CaseInputError naming fields."""
    if not isinstance(case, dict):
        raise CaseInputError([f"(case): expected a JSON object, got {type(case).__name__}"])
    checked, problems = check_against(resolve_contract(spec.input), case)
    if checked is None:
        raise CaseInputError(problems)
    size = len(json.dumps(checked, separators=(",", ":")).encode())
    if size > MAX_CASE_BYTES:
        raise CaseInputError(
            [f"(case): {size} bytes; a case may be at most {MAX_CASE_BYTES} bytes (it travels in the "
             "workflow history, which Temporal caps). Store large documents elsewhere and pass a reference."]
        )  # fmt: skip
    return checked


class BatonClient:
    """Start and steer governed cases on one Temporal namespace and task queue."""

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        settings: Settings | None = None,
        app: App | None = None,
        wiring: Wiring | None = None,
    ) -> None:
        self.temporal = client
        self.task_queue = task_queue
        self.settings = settings or Settings.for_app(app)
        self.catalog = Catalog(app, self.settings, wiring)
        self._keys: DecisionKeys | bool | None = False  # read on first use
        self._indexed: bool | None = None
        self._registered: frozenset[str] = frozenset()

    @property
    def signing_keys(self) -> DecisionKeys | None:
        """The key this client signs decisions and submissions with (``BATON_DECISION_KEYS``,
        or the development key ``baton dev`` created in the home), or None: unsigned."""
        if self._keys is False:
            self._keys = DecisionKeys.from_env(os.environ, self.settings.home)
        assert not isinstance(self._keys, bool)
        return self._keys

    @property
    def app(self) -> App | None:
        """The app whose processes this client starts by name, if any."""
        return self.catalog.app

    async def index_ready(self) -> bool:
        """True when the namespace has Baton's search attributes (checked once per client)."""
        if self._indexed is None:
            try:
                listed = await self.temporal.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=self.temporal.namespace)
                )
            except RPCError as exc:
                if exc.status not in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED):
                    # A blip must not start cases that never reach an inbox: fail, and ask again.
                    raise BatonRuntimeError(f"Temporal did not answer: {exc.message}") from None
                self._indexed = False  # e.g. the time-skipping test server has no operator API
            else:
                self._registered = frozenset(listed.custom_attributes)
                self._indexed = all(key.name in self._registered for key in search.ALL)
        return self._indexed

    async def deciders_indexed(self) -> bool:
        """True when the namespace also has ``BatonDeciders`` (the auditor's "decided by" search)."""
        return await self.index_ready() and search.DECIDERS.name in self._registered

    @classmethod
    async def connect(
        cls,
        *,
        address: str | None = None,
        namespace: str | None = None,
        profile: str | None = None,
        settings: Settings | None = None,
        app: App | None = None,
    ) -> BatonClient:
        """Connect using Temporal's environment variables and config profile (``baton.connection``).

        With ``app``, processes are found by name in the app and every start checks
        the spec's wiring (activities, providers, roles) before anything reaches Temporal.
        """
        settings = settings or Settings.for_app(app)
        client = await connect(address=address, namespace=namespace, profile=profile)
        return cls(client, task_queue=settings.task_queue, settings=settings, app=app)

    def load(self, process: str | Path) -> SpecSnapshot:
        """Load and validate a spec by name or path, with its wiring (roles, activities, providers)."""
        return self.catalog.load(process)

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
        if isinstance(process, SpecSnapshot):
            # Re-validate a snapshot built in code (model_copy skips validation): a spec
            # the workflow cannot decode would leave a case stuck on its first task.
            try:
                ProcessSpec.model_validate(process.spec.model_dump())
            except ValidationError as exc:
                raise SpecError(process.source or "<snapshot>", validation_problems(exc)) from None
            snapshot = process
        else:
            snapshot = self.load(process)
        spec = snapshot.spec
        checked = prepare_case(spec, case)
        case_id = case_id or f"{spec.process}-{uuid.uuid4().hex[:12]}"
        if not CASE_ID.match(case_id):
            raise BatonUsageError(
                f"case id {excerpt(case_id, 64)!r}: use at most {MAX_ID} letters, digits and . _ : @ -"
            )
        try:
            submitted_by = canonical(submitted_by)
        except IdentityError as exc:
            raise BatonUsageError(f"submitter {excerpt(submitted_by, 64)!r}: {exc}") from None
        index = await self.index_ready()
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(search.PROCESS, spec.process),
                SearchAttributePair(search.STAGE, search.RUNNING),
            ]
            if index
            else []
        )
        keys = self.signing_keys
        signature = (
            keys.sign(submission_message(case_id, submitted_by, digest(checked), snapshot.sha256))
            if keys is not None and keys.can_sign
            else None
        )
        start = CaseStart(
            case_id=case_id,
            spec=snapshot,
            case=checked,
            submitted_by=submitted_by,
            signature=signature,
            index=index,
            index_deciders=await self.deciders_indexed(),
        )
        try:
            await self.temporal.start_workflow(
                WORKFLOW_NAME,
                start,
                id=case_id,
                task_queue=self.task_queue,
                search_attributes=attributes,
                memo={
                    "process": spec.process,
                    "spec_version": spec.version,
                    "spec_sha256": snapshot.sha256,
                    "submitted_by": submitted_by,
                },
                static_summary=f"{spec.process} v{spec.version} · case {case_id}",
                static_details=spec.description or None,
                # A case id names one case forever: a closed case's id is never reused,
                # so nothing (an idempotency key, an audit record) can be mistaken for its.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # When a worker of this queue shares this client (demo, eval, tests), the
                # first workflow task comes back in the start response: one round trip
                # through matching less. Elsewhere the server starts the case as usual.
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:
            raise BatonUsageError(
                f"case id {case_id!r} is already used (by a running or a closed case); "
                "case ids are never reused: pick another id"
            ) from None
        return case_id

    def handle(self, case_id: str) -> WorkflowHandle[Any, CaseResult]:
        """The Temporal handle of a case."""
        return self.temporal.get_workflow_handle(case_id, result_type=CaseResult)

    async def result(self, case_id: str) -> CaseResult:
        """Wait for the case to end and return its result.

        Raises:
            BatonUsageError: the case is encrypted and this client lacks its keys.
        """
        raw = self.temporal.get_workflow_handle(case_id, result_type=RawValue)
        try:
            value = await raw.result()
        except CodecKeyError as exc:
            raise _wrong_key(case_id, exc) from None
        result: CaseResult = self._decode(case_id, value, CaseResult)
        return result

    async def status(self, case_id: str) -> CaseStatus:
        """The case's live status (stage, what it waits for, outcome).

        Raises:
            BatonUsageError: no such case, or it is encrypted and this client lacks its keys.
        """
        status: CaseStatus = await self._query(case_id, "status", CaseStatus)
        return status

    async def current_proposal(self, case_id: str) -> str | None:
        """The digest of the proposal the case waits on, or None.

        Read from the memo where the namespace has Baton's search attributes (no worker
        needed, so a signal can be sent while workers are down), else from the case itself.
        """
        try:
            description = await self.handle(case_id).describe()
            found = await description.memo_value("proposal", None)
        except RPCError as exc:
            raise _not_found(case_id, exc) from None
        except CodecKeyError as exc:
            raise _wrong_key(case_id, exc) from None
        if isinstance(found, str):
            return found
        awaiting = (await self.status(case_id)).awaiting
        return awaiting.proposal if awaiting is not None else None

    async def casefile(self, case_id: str) -> CaseFile:
        """What a person deciding on the case needs to see: the case, every checked handoff,
        earlier drafts, the checks and rules that led here, and what it waits for.

        Raises:
            BatonUsageError: no such case, or it is encrypted and this client lacks its keys.
        """
        found: CaseFile = await self._query(case_id, "casefile", CaseFile)
        return found

    async def audit(self, case_id: str) -> list[AuditEvent]:
        """The case's audit trail so far.

        Raises:
            BatonUsageError: no such case, or it is encrypted and this client lacks its keys.
        """
        events: list[AuditEvent] = await self._query(case_id, "audit", list[AuditEvent])
        return events

    async def decide(
        self,
        case_id: str,
        verdict: Verdict,
        *,
        approver: str,
        comment: str = "",
        decision_id: str | None = None,
        signal: bool = False,
        proposal: str | None = None,
    ) -> DecisionReceipt | None:
        """Send a decision as ``approver`` on ``proposal``.

        ``proposal`` is the digest of what the approver reviewed (``show`` prints it); a
        case whose proposal has changed since refuses the decision. Without it, the
        decision is bound to the proposal the case waits on as this call reads it: for
        scripts that decide on what they have just read, not for people.

        By default an update: the case checks it first and a refusal raises
        :class:`DecisionRefusedError` at once; a repeated ``decision_id`` applies once.
        With ``signal=True`` it is fire and forget: the case records a refusal in
        its audit trail, and this returns None.

        A case this client cannot read (encrypted, and the keys are missing or
        wrong) is refused before anything is sent: without the keys the decision
        would land in its history as plain text, or as data its workers cannot open.
        """
        decision_id = decision_id or uuid.uuid4().hex
        handle = self.handle(case_id)
        try:  # the same bounds the case applies, checked before anything is sent
            HumanDecision(approver=approver, comment=comment, decision_id=decision_id, proposal=proposal)
        except ValidationError as exc:
            raise BatonUsageError("decision not sent: " + "; ".join(validation_problems(exc))) from None
        try:
            await self._check_readable(case_id)
            if proposal is None or len(proposal) < 64:
                current = await self.current_proposal(case_id)
                if proposal is None or (current is not None and current.startswith(proposal)):
                    proposal = current  # a prefix that matches is the whole digest (what is signed)
            keys = self.signing_keys
            signature = (
                keys.sign(decision_message(case_id, verdict, approver, comment, proposal, decision_id))
                if keys is not None and keys.can_sign
                else None
            )
            if signal:
                decision = HumanDecision(
                    approver=approver, comment=comment, decision_id=decision_id, proposal=proposal,
                    signature=signature,
                )  # fmt: skip
                await handle.signal(verdict, decision)
                return None
            request = DecisionRequest(
                verdict=verdict,
                approver=approver,
                comment=comment,
                decision_id=decision_id,
                proposal=proposal,
                signature=signature,
            )
            receipt: DecisionReceipt = await handle.execute_update(
                "decide", request, id=decision_id, result_type=DecisionReceipt
            )
            return receipt
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise DecisionRefusedError(
                cause.message if isinstance(cause, ApplicationError) else str(cause)
            ) from None
        except RPCError as exc:
            raise _not_found(case_id, exc) from None

    async def approve(
        self,
        case_id: str,
        *,
        approver: str,
        comment: str = "",
        signal: bool = False,
        proposal: str | None = None,
    ) -> DecisionReceipt | None:
        """Approve as ``approver`` (see :meth:`decide`)."""
        return await self.decide(
            case_id, "approve", approver=approver, comment=comment, signal=signal, proposal=proposal
        )

    async def reject(
        self, case_id: str, *, approver: str, reason: str, signal: bool = False, proposal: str | None = None
    ) -> DecisionReceipt | None:
        """Reject as ``approver`` with the reason (see :meth:`decide`)."""
        return await self.decide(
            case_id, "reject", approver=approver, comment=reason, signal=signal, proposal=proposal
        )

    async def request_changes(
        self, case_id: str, *, approver: str, feedback: str, signal: bool = False, proposal: str | None = None
    ) -> DecisionReceipt | None:
        """Send the draft back with ``feedback`` (see :meth:`decide`)."""
        return await self.decide(
            case_id, "request_changes", approver=approver, comment=feedback, signal=signal, proposal=proposal
        )

    async def pending(
        self,
        *,
        role: str | None = None,
        roles: Sequence[str] | None = None,
        process: str | None = None,
        limit: int = 1000,
        memo: bool = True,
    ) -> list[PendingCase]:
        """This client's cases (its task queue) waiting on a person, oldest first: on ``role``
        or any of ``roles`` when given (an empty ``roles`` matches nothing), of ``process``
        when given. ``memo=False`` skips reading each line's summary and proposal (see
        :meth:`with_memo`)."""
        if not await self.index_ready():
            raise BatonUsageError(
                "this namespace lacks Baton's search attributes; `baton dev` registers them "
                "(on a cluster: temporal operator search-attribute create, see README)"
            )
        query = (
            f"ExecutionStatus = 'Running' AND {search.STAGE.name} IN ('{search.AWAITING}', '{search.HELD}')"
            f" AND TaskQueue = '{_quote(self.task_queue)}'"
        )
        if role:
            query += f" AND {search.AWAITING_ROLE.name} = '{_quote(role)}'"
        if roles is not None:
            if not roles:
                return []
            listed = ", ".join(f"'{_quote(r)}'" for r in sorted(roles))
            query += f" AND {search.AWAITING_ROLE.name} IN ({listed})"
        if process:
            query += f" AND {search.PROCESS.name} = '{_quote(process)}'"
        found: list[PendingCase] = []
        token = b""
        while len(found) < limit:
            # The raw listing: the SDK's would decode every search attribute of every row
            # (two thirds of an inbox's time at 2,000 cases); a line needs four, and its memo
            # only if it is shown.
            page = await self.temporal.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=self.temporal.namespace,
                    query=query,
                    page_size=min(1000, limit - len(found)),
                    next_page_token=token,
                )
            )
            found += [_pending_line(info) for info in page.executions]
            token = page.next_page_token
            if not token:
                break
        found.sort(key=lambda p: p.started)
        return await self.with_memo(found) if memo else found

    async def with_memo(self, cases: Sequence[PendingCase]) -> list[PendingCase]:
        """``cases`` with their summary and proposal read from the memo (``pending(memo=False)``
        leaves that for the lines a page shows)."""
        described = []
        for case in cases:
            if case.memo is not None:
                summary = await self._memo_text(case.case_id, case.memo, "summary")
                proposal = await self._memo_text(case.case_id, case.memo, "proposal")
                case = dataclasses.replace(case, summary=summary, proposal=proposal, memo=None)
            described.append(case)
        return described

    async def _memo_text(self, case_id: str, memo: Memo, name: str) -> str:
        """A memo field (the inbox summary, the proposal digest), or why it cannot be read here.

        One encrypted case must not break the whole inbox for a client without its keys:
        the rest of the line (ids, role, deadline, amount) comes from search attributes,
        which are never encrypted.
        """
        if name not in memo.fields:
            return ""
        context = WorkflowSerializationContext(namespace=self.temporal.namespace, workflow_id=case_id)
        converter = self.temporal.data_converter.with_context(context)
        payload = memo.fields[name]
        try:
            if converter.payload_codec is not None:
                payload = (await converter.payload_codec.decode([payload]))[0]
        except CodecKeyError as exc:
            return f"(encrypted: {_key_problem(exc)})"
        if is_encrypted(payload):
            return "(encrypted: set BATON_CODEC_KEYS)"
        return str(converter.payload_converter.from_payloads([payload])[0])

    async def _query(self, case_id: str, name: str, result_type: Any) -> Any:
        # Asked for raw, so an encrypted reply this client cannot open is recognised
        # here instead of failing inside the SDK's converter with a bare KeyError.
        try:
            raw = await self.temporal.get_workflow_handle(case_id).query(
                name, result_type=RawValue, rpc_timeout=QUERY_TIMEOUT
            )
        except RPCError as exc:
            raise _not_found(case_id, exc) from None
        except CodecKeyError as exc:
            raise _wrong_key(case_id, exc) from None
        return self._decode(case_id, raw, result_type)

    def _decode(self, case_id: str, raw: Any, result_type: Any) -> Any:
        """Convert a payload the codec (if any) has already decoded into ``result_type``."""
        if not isinstance(raw, RawValue):
            return raw  # no payload at all (None)
        if is_encrypted(raw.payload):
            raise _encrypted(case_id)
        context = WorkflowSerializationContext(namespace=self.temporal.namespace, workflow_id=case_id)
        converter = self.temporal.data_converter.with_context(context).payload_converter
        return converter.from_payloads([raw.payload], [result_type])[0]

    async def _check_readable(self, case_id: str) -> None:
        """Raise BatonUsageError unless this client can open the case's payloads (its memo)."""
        description = await self.temporal.get_workflow_handle(case_id).describe()
        fields = description.raw_info.memo.fields
        if not fields:
            return
        name = next(iter(fields))
        try:
            raw = await description.memo_value(name, type_hint=RawValue)
        except CodecKeyError as exc:
            raise _wrong_key(case_id, exc) from None
        if is_encrypted(raw.payload):
            raise _encrypted(case_id)


def _pending_line(info: WorkflowExecutionInfo) -> PendingCase:
    """One inbox line from a visibility row: the four search attributes it needs, decoded here.

    Search attributes are never encoded by a codec: each is a JSON payload (a datetime as
    RFC 3339 text; some servers wrap a value in a list).
    """
    fields = info.search_attributes.indexed_fields

    def value(name: str) -> Any:
        payload = fields.get(name)
        if payload is None:
            return None
        found = json.loads(payload.data)
        return (found[0] if found else None) if isinstance(found, list) else found

    deadline = value(search.DEADLINE.name)
    amount = value(search.AMOUNT.name)
    return PendingCase(
        case_id=info.execution.workflow_id,
        process=str(value(search.PROCESS.name) or ""),
        stage=str(value(search.STAGE.name) or ""),
        role=str(value(search.AWAITING_ROLE.name) or ""),
        started=info.start_time.ToDatetime(tzinfo=UTC),
        deadline=datetime.fromisoformat(deadline) if isinstance(deadline, str) else None,
        amount=float(amount) if isinstance(amount, int | float) else None,
        summary="",
        memo=info.memo,
    )


def _encrypted(case_id: str) -> BatonUsageError:
    return BatonUsageError(f"case {case_id!r} is encrypted: {KEYS_HINT}")


def _key_problem(exc: CodecKeyError) -> str:
    if exc.missing:
        return f"its key {exc.key_id!r} is not among BATON_CODEC_KEYS"
    return f"the key {exc.key_id!r} in BATON_CODEC_KEYS does not decrypt it"


def _wrong_key(case_id: str, exc: CodecKeyError) -> BatonUsageError:
    if exc.missing:
        return BatonUsageError(
            f"case {case_id!r} is encrypted with key {exc.key_id!r}, which BATON_CODEC_KEYS "
            f"(or BATON_CODEC_KEYS_FILE) lacks; add key {exc.key_id!r} as its workers have it"
        )
    return BatonUsageError(
        f"case {case_id!r} is encrypted with key {exc.key_id!r}, but the key with that id in "
        "BATON_CODEC_KEYS (or BATON_CODEC_KEYS_FILE) does not decrypt it; use the same key "
        "bytes its workers use"
    )


def _quote(value: str) -> str:
    """Escape a value for a visibility query string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _not_found(case_id: str, exc: RPCError) -> Exception:
    if exc.status == RPCStatusCode.NOT_FOUND and "completed" in exc.message.lower():
        return BatonUsageError(f"case {case_id!r} has ended; it is no longer awaiting approval")
    if exc.status == RPCStatusCode.NOT_FOUND:
        return BatonUsageError(f"no case {case_id!r}")
    if exc.status == RPCStatusCode.FAILED_PRECONDITION:
        return BatonUsageError(f"case {case_id!r} has ended: {exc.message}")
    return exc
