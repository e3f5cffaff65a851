"""``GovernedProcess``: interprets a frozen process spec for one case.

The spec arrives whole in the start input (never read from disk here), so a
case stays governed by the version it started under. The run is:

    validate case → flow (agents, handoff checks, review loops)
        → [escalation ladder if a handoff or review cannot pass]
        → decision rules → [approval ladder] → idempotent action (if any) → result

A person's ``request_changes`` (on either ladder) sends their feedback to the
drafting step and runs the flow again from there, through every check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows.handoffs import HandoffRunner, execute, failure_message
from workflows.ladder import PAST, ApprovalDesk, LadderResult
from workflows.patches import Patches
from workflows.resolution import Opinion, Resolution, findings_of, opinion_of, resolve
from workflows.trail import AuditTrail
from workflows.visibility import Visibility

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from baton import signing
    from baton.contracts import check_against, resolve_contract, validation_problems
    from baton.digests import digest
    from baton.identity import canonical_or_none
    from baton.messages import (
        ActionInput,
        ActionResult,
        AuditBatch,
        AuditEvent,
        AuditKind,
        AuditReceipt,
        CaseFile,
        CaseResult,
        CaseStart,
        CaseStatus,
        DecisionReceipt,
        DecisionRequest,
        Feedback,
        HumanDecision,
        JsonDict,
        Outcome,
        Resume,
        SubmissionCheck,
        SubmissionVerdict,
        Verdict,
    )
    from baton.rules import RuleError, evaluate_bool
    from baton.spec.models import GroupSpec, MemberSpec, StepSpec, item_names
    from baton.textbounds import excerpt


AUDIT_ACTIVITY = "baton.audit_append"
AUDIT_LOG_PATCH = "audit-log-v1"
"""Cases started before the audit log existed replay without it (see README)."""
AUDIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
"""Retried until the log takes the records (a full or read-only disk heals within ~10 s
of space returning; the policy of a local activity is not part of replayed history)."""
AUDIT_ANCHOR_PATCH = "audit-anchor-v1"
"""From here on each append's receipt (the log's head hash for the case) is kept in the
memo as ``audit_head``/``audit_records``, so ``baton audit verify`` can compare the log
with what the engine saw. Cases that appended before replay with the old int result."""
CANCEL_PATCH = "cancel-recorded-v1"
"""A cancelled case records the cancellation (audit event, stage, outcome) before it ends."""
SIGNALS = ("approve", "reject", "request_changes")
KEPT_DRAFTS = 3
"""Earlier versions of a handoff kept for ``baton show``'s diff (bounded: the result stays small)."""
SHOWN_CHECKS = {
    AuditKind.CHECK_PASSED, AuditKind.CHECK_FAILED, AuditKind.SKIPPED, AuditKind.REVIEW_REJECTED,
    AuditKind.OPINION, AuditKind.RESOLVED, AuditKind.REVISION, AuditKind.ESCALATED, AuditKind.DECISION,
    AuditKind.APPROVED, AuditKind.REJECTED, AuditKind.CHANGES_REQUESTED,
}  # fmt: skip
"""The audit events ``show`` lists as how the case got where it is."""
SIGNING_PATCH = "signed-decisions-v1"
"""From here on a case asks the workers (``baton.check_submission``, recorded) whether
decisions must be signed and whether its submission is; cases started before never require it."""
CHECK_SUBMISSION = "baton.check_submission"
UNSIGNED_SIGNAL = (
    "unsigned decision: this deployment accepts only signed decisions, sent through the decide update"
)
BUDGET_PATCH = "budget-after-review-v1"
"""A step over the token budget has its own review applied before the budget escalates, so
waiving the budget can no longer skip that review (older cases replay the old order)."""
OVERRULE_PATCH = "overrule-decides-v1"
"""A person who overrules a reviewer no longer sends the case straight to the action: the
rest of the flow and the decision rules (with ``overruled`` true) still apply, so a rule's
approval ladder (a two-person rule) cannot be skipped by an overrule."""


@dataclass
class FlowFailure:
    """Why the flow stopped short: a handoff that never passed or a review never satisfied."""

    kind: Literal["handoff", "review", "budget", "people"]
    index: int
    problems: list[Feedback]
    step: str = ""
    """The member whose handoff failed, when the item is a group."""
    reason: str = ""
    """Why a group's reviewers send the case to a person."""


@dataclass
class Next:
    """What happens after the flow or a decision: act, run the flow again, or stop."""

    kind: Literal["act", "rerun", "closed"]
    decider: str = ""
    start_at: int = 0
    feedback: dict[str, list[Feedback]] = field(default_factory=dict)


@workflow.defn(name="GovernedProcess")
class GovernedProcess:
    """One case of a governed process; see the module docstring for the shape of a run."""

    @workflow.init
    def __init__(self, start: CaseStart) -> None:
        self._patches = Patches()
        self._start = start
        self._spec = start.spec.spec
        self._trail = AuditTrail(self._spec.process, start.case_id)
        self._view = Visibility(
            self._spec,
            start.case_id,
            self._trail,
            index=start.index,
            index_deciders=start.index_deciders,
            since=self._patches.since,
        )
        self._desk = ApprovalDesk(
            self._spec,
            self._trail,
            submitted_by=start.submitted_by,
            on_change=lambda: self._set_stage(self._stage),
            notify=self._view.notify,
            since=self._patches.since,
        )
        self._handoffs = HandoffRunner(
            self._spec, start.case_id, start.case, self._trail, since=self._patches.since
        )
        self._outputs: dict[str, JsonDict] = {}
        self._rounds: dict[str, int] = {}
        self._path: list[str] = []
        self._stage = "starting"
        self._outcome: Outcome | None = None
        self._reason: str | None = None
        self._budget_waived = False
        self._overruled_by: str | None = None
        self._skipped: set[str] = set()
        self._decided_by: str | None = None
        self._action: ActionResult | None = None
        self._signing_required = False
        self._drafts: dict[str, list[JsonDict]] = {}
        if start.resume is not None and workflow.info().continued_run_id is not None:
            self._restore(start.resume)  # only a run this case continued into may resume it

    def _restore(self, resume: Resume) -> None:
        """Pick up a case carried over from an earlier run (continue-as-new)."""
        self._outputs, self._rounds, self._path = dict(resume.outputs), dict(resume.rounds), list(resume.path)
        self._trail.events, self._trail.logged = list(resume.audit), resume.logged
        self._handoffs.usage = resume.usage
        self._desk.records = list(resume.approvals)
        self._desk.refused = resume.refusals
        self._desk.seen_ids = resume.decision_ids
        self._overruled_by = resume.overruled_by
        self._skipped = set(resume.skipped)
        self._budget_waived = resume.budget_waived
        self._signing_required = resume.signing_required
        self._drafts = {name: list(versions) for name, versions in resume.drafts.items()}

    @workflow.run
    async def run(self, start: CaseStart) -> CaseResult:
        """Run the case to an outcome; never leaves it waiting without a deadline.

        A cancelled case records its cancellation (an audit event, stage ``closed``,
        outcome ``cancelled``, the audit log appended) and then ends as cancelled.
        """
        try:
            return await self._run(start)
        except asyncio.CancelledError:
            if self._patches.since(CANCEL_PATCH):
                await self._record_cancellation()
            raise

    async def _record_cancellation(self) -> None:
        self._desk.awaiting = None  # whatever it waited for, nobody is asked any more
        self._path.append("cancelled")
        self._close(Outcome.CANCELLED, f"cancelled while {self._stage}")
        await self._log_audit()

    async def _run(self, start: CaseStart) -> CaseResult:
        if start.resume is not None and workflow.info().continued_run_id is None:
            # A client may not start a case half-way through, with handoffs and flags it wrote.
            self._trail.add(
                AuditKind.CHECK_FAILED, "start input: a resume is only accepted from continue-as-new"
            )
            self._close(Outcome.INVALID_INPUT, "a case cannot be started from a resume")
            return self._result()
        if start.resume is not None:
            step = Next("rerun", start_at=start.resume.start_at, feedback=start.resume.feedback)
        else:
            submitter = excerpt(start.submitted_by, 64)
            self._trail.add(
                AuditKind.CASE_STARTED,
                f"{self._spec.process} v{self._spec.version} started by {submitter}",
                actor=submitter,
                spec_sha256=start.spec.sha256,
            )
            if canonical_or_none(start.submitted_by) is None:
                self._trail.add(AuditKind.CHECK_FAILED, "submitter: control, invisible or space characters")
                self._close(Outcome.INVALID_INPUT, "the submitter's name cannot be an identity")
                return self._result()
            if self._patches.since(SIGNING_PATCH) and not await self._submission_is_signed():
                return self._result()
            if not self._case_is_valid():
                self._close(Outcome.INVALID_INPUT, "case does not match the input contract")
                return self._result()
            step = await self._after_flow(await self._run_flow(0, {}))
        while step.kind == "rerun":
            if self._history_is_long():
                await self._carry_on_in_a_new_run(step)
            step = await self._after_flow(await self._run_flow(step.start_at, step.feedback))
        if step.kind == "act":
            await self._act(step.decider)
        await self._view.flush()
        await self._log_audit()
        return self._result()

    async def _submission_is_signed(self) -> bool:
        """Ask the workers whether signing is required and the submission signed as required."""
        start = self._start
        verdict = await workflow.execute_local_activity(
            CHECK_SUBMISSION,
            SubmissionCheck(
                case_id=start.case_id,
                workflow_id=workflow.info().workflow_id,
                submitted_by=start.submitted_by,
                case_sha256=digest(start.case),
                spec_sha256=start.spec.sha256,
                spec_content_sha256=start.spec.spec.sha256(),  # the digest, not the 4 KB spec
                signature=start.signature,
            ),
            result_type=SubmissionVerdict,
            start_to_close_timeout=timedelta(seconds=10),
            summary="signing · submission",
        )
        self._signing_required = verdict.required
        if verdict.problem is not None:
            self._trail.add(AuditKind.CHECK_FAILED, f"submission: {verdict.problem}")
            self._close(Outcome.INVALID_INPUT, verdict.problem)
            return False
        if verdict.signed_by is not None:
            self._trail.add(
                AuditKind.CHECK_PASSED,
                f"submission by {excerpt(start.submitted_by, 64)} signed with key {verdict.signed_by}",
                actor=excerpt(start.submitted_by, 64),
                signed_by=verdict.signed_by,
            )
        return True

    # Decisions come from outside: handlers take the raw payload and check it here, so a
    # malformed one is refused and recorded instead of being dropped by the SDK unseen.

    @workflow.signal
    def approve(self, payload: RawValue) -> None:
        """An approver approves what the case is waiting on (a ``HumanDecision``)."""
        self._signalled("approve", payload)

    @workflow.signal
    def reject(self, payload: RawValue) -> None:
        """An approver rejects what the case is waiting on (a ``HumanDecision``)."""
        self._signalled("reject", payload)

    @workflow.signal
    def request_changes(self, payload: RawValue) -> None:
        """An approver sends the draft back with feedback in ``comment`` (a ``HumanDecision``)."""
        self._signalled("request_changes", payload)

    @workflow.signal(dynamic=True)
    def unknown_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """A signal Baton does not know (``approved``): refused and recorded, never ignored."""
        self._desk.refuse(
            f"signal {excerpt(name, 64)!r}",
            f"unknown signal; a decision is one of {', '.join(SIGNALS)}, or the decide update",
        )

    def _signalled(self, verdict: Verdict, payload: RawValue) -> None:
        decision = _parse(payload, HumanDecision)
        if isinstance(decision, str):
            self._desk.refuse(f"{verdict} signal", f"malformed decision: {decision}", decision=verdict)
            return
        if self._signing_required:  # a signal cannot be verified replay-safely: updates only
            by = excerpt(decision.approver, 64)
            self._desk.refuse(f"{verdict} signal by {by}", UNSIGNED_SIGNAL, actor=by, decision=verdict)
            return
        self._desk.receive(verdict, decision)

    @workflow.update
    def decide(self, payload: RawValue) -> DecisionReceipt:
        """A decision whose refusal the caller hears at once (see the validator)."""
        request = _parse(payload, DecisionRequest)
        assert not isinstance(request, str), "the validator refused it"
        signed_by = request.signature.key_id if self._signing_required and request.signature else None
        state = self._desk.apply(request.verdict, request, signed_by=signed_by)
        approver = canonical_or_none(request.approver) or request.approver
        return DecisionReceipt(verdict=request.verdict, approver=approver, state=state)

    @decide.validator
    def _validate_decide(self, payload: RawValue) -> None:
        request = _parse(payload, DecisionRequest)
        if isinstance(request, str):
            raise ValueError(f"malformed decision: {request}")
        refusal = None
        if self._signing_required:  # first, so an unsigned caller learns nothing of roles
            refusal = signing.installed().decision_problem(self._start.case_id, request.verdict, request)
        refusal = refusal or self._desk.refusal(request.verdict, request)  # validators do not run on replay
        if refusal is not None:
            raise ValueError(refusal)

    @workflow.query
    def status(self) -> CaseStatus:
        """Where the case is now and what, if anything, it waits for."""
        return CaseStatus(
            case_id=self._start.case_id,
            process=self._spec.process,
            spec_version=self._spec.version,
            spec_sha256=self._start.spec.sha256,
            stage=self._stage,
            path=list(self._path),
            awaiting=self._desk.awaiting,
            outcome=self._outcome,
            reason=self._reason,
            usage=self._handoffs.usage,
            refusals=self._desk.refused,
        )

    @workflow.query
    def casefile(self) -> CaseFile:
        """What a person deciding on this case needs to see (``baton show``)."""
        contracts = {
            step.step: self._spec.agents[step.agent_name].output
            for step in self._spec.steps()
            if step.step in self._outputs
        }
        return CaseFile(
            case_id=self._start.case_id,
            process=self._spec.process,
            spec_version=self._spec.version,
            spec_sha256=self._start.spec.sha256,
            submitted_by=self._start.submitted_by,
            case=self._start.case,
            input_contract=self._spec.input,
            handoffs={name: self._outputs[name] for name in self._spec.names() if name in self._outputs},
            contracts=contracts,
            drafts=dict(self._drafts),
            checks=[e for e in self._trail.events if e.kind in SHOWN_CHECKS],
            path=list(self._path),
            stage=self._stage,
            awaiting=self._desk.awaiting,
            outcome=self._outcome,
            reason=self._reason,
            deciders=sorted({record.approver for record in self._desk.records}),
        )

    @workflow.query
    def audit(self) -> list[AuditEvent]:
        """Every audit event so far, in order."""
        return list(self._trail.events)

    # -- stages -------------------------------------------------------------

    def _case_is_valid(self) -> bool:
        with workflow.unsafe.imports_passed_through():
            model = resolve_contract(self._spec.input)
        _, problems = check_against(model, self._start.case)
        if problems:
            self._trail.add(AuditKind.CHECK_FAILED, "case input: " + "; ".join(problems))
        return not problems

    async def _run_flow(self, start_at: int, feedback: dict[str, list[Feedback]]) -> FlowFailure | None:
        """Run flow items from ``start_at``; loop review rejections back to the reviewed step."""
        flow = self._spec.flow
        feedback = dict(feedback)
        for stale in flow[start_at:]:
            self._forget(stale)
        i = start_at
        while i < len(flow):
            item = flow[i]
            routed = self._routed(i, item)
            if isinstance(routed, FlowFailure):
                return routed
            if not routed:
                i += 1
                continue
            if isinstance(item, GroupSpec):
                went = await self._run_group(i, item, feedback)
            else:
                went = await self._run_step(i, item, feedback)
            if isinstance(went, FlowFailure):
                return went
            i = went
        return None

    def _forget(self, item: StepSpec | GroupSpec) -> None:
        """Drop what a flow item produced, before it runs again."""
        for name in item_names(item):
            self._retire(name)
            self._skipped.discard(name)

    def _retire(self, name: str) -> None:
        """Set a handoff aside as an earlier draft (the last few are kept, for ``show``)."""
        old = self._outputs.pop(name, None)
        if old is not None:
            self._drafts[name] = [*self._drafts.get(name, []), old][-KEPT_DRAFTS:]

    def _routed(self, index: int, item: StepSpec | GroupSpec) -> bool | FlowFailure:
        """Whether the item's ``when`` lets it run; a skipped item is audited and reads as null."""
        if item.when is None:
            return True
        try:
            runs = evaluate_bool(item.when, self._context())
        except RuleError as exc:
            return FlowFailure("handoff", index, [Feedback(source="guard", message=f"route: {exc}")])
        if not runs:
            self._skipped.update(item_names(item))
            self._trail.add(AuditKind.SKIPPED, f"{item.step} skipped: {item.when} is false", step=item.step)
            self._path.append(f"{item.step} skipped")
        return runs

    def _is_over_budget(self) -> bool:
        budget = self._spec.token_budget
        return budget is not None and not self._budget_waived and self._handoffs.usage.total > budget

    def _over_budget(self, index: int) -> FlowFailure | None:
        """The budget failure to escalate (after the item at ``index``), if the case is over it."""
        if not self._is_over_budget():
            return None
        budget, used = self._spec.token_budget, self._handoffs.usage.total
        self._path.append("budget✗")
        problem = Feedback(source="agent_error", message=f"token budget exceeded: {used} > {budget}")
        return FlowFailure("budget", index + 1, [problem])

    async def _run_step(
        self, i: int, step: StepSpec, feedback: dict[str, list[Feedback]]
    ) -> int | FlowFailure:
        """Run one step (and its review); the index to go on from, or why the flow stops."""
        revision = self._rounds.get(step.step, 0)
        self._set_stage(f"running {step.agent_name}" + (f" (revision {revision})" if revision else ""))
        result = await self._handoffs.run(step, self._outputs, feedback.pop(step.step, []), revision=revision)
        self._path.extend([f"{step.step}✗"] * result.failed_attempts)
        if result.output is None:
            return FlowFailure("handoff", i, result.problems)
        self._outputs[step.step] = result.output
        self._view.describe(self._context())
        # Before BUDGET_PATCH the budget was checked before the step's own review, so waiving
        # it skipped the review; asked only when over budget, so other cases record nothing.
        if self._is_over_budget() and not self._patches.since(BUDGET_PATCH):
            return self._over_budget(i) or i + 1
        self._path.append(step.step + (f"(r{revision})" if revision else ""))
        if step.reviews is None:
            return self._over_budget(i) or i + 1
        try:
            passed, findings = self._review(i)
        except RuleError as exc:
            problem = Feedback(source="guard", message=f"review could not be read: {exc}")
            return FlowFailure("handoff", i, [problem])
        if passed:
            return self._over_budget(i) or i + 1
        self._trail.add(
            AuditKind.REVIEW_REJECTED,
            f"{step.step} rejected {step.reviews}: " + "; ".join(f.message for f in findings),
            step=step.step,
            agent=step.agent_name,
            round=self._rounds.get(step.reviews, 0) + 1,
        )
        return self._send_back(i, step.reviews, step.max_rounds, findings, feedback)

    def _send_back(
        self,
        i: int,
        target: str,
        max_rounds: int,
        findings: list[Feedback],
        feedback: dict[str, list[Feedback]],
    ) -> int | FlowFailure:
        """A review said no: the reviewed step revises with the findings, within ``max_rounds``."""
        rounds = self._rounds.get(target, 0) + 1
        if rounds > max_rounds:
            return FlowFailure("review", i, findings)
        at = self._spec.step_index(target)
        for stale in self._spec.flow[at : i + 1]:
            for name in item_names(stale):
                self._retire(name)
        self._rounds[target] = rounds
        feedback[target] = findings
        self._trail.add(
            AuditKind.REVISION,
            f"{target} revises (round {rounds} of {max_rounds})",
            step=target,
            round=rounds,
        )
        return at

    async def _run_group(
        self, i: int, group: GroupSpec, feedback: dict[str, list[Feedback]]
    ) -> int | FlowFailure:
        """Run a group's members at once, each handoff checked on its own; resolve reviewers."""
        before = dict(self._outputs)  # what every member may see: never a sibling's handoff
        running: list[MemberSpec] = []
        for member in group.parallel:
            routed = self._routed(i, member)
            if isinstance(routed, FlowFailure):
                return routed
            if routed:
                running.append(member)
        self._set_stage(f"running {group.group} ({', '.join(m.step for m in running)})")
        results = await asyncio.gather(
            *(
                self._handoffs.run(m, before, feedback.pop(m.step, []), revision=self._rounds.get(m.step, 0))
                for m in running
            )
        )
        left_out: list[str] = []
        for member, result in zip(running, results, strict=True):
            self._path.extend([f"{member.step}✗"] * result.failed_attempts)
            if result.output is not None:
                self._outputs[member.step] = result.output
                self._path.append(member.step)
            elif member.optional:
                left_out.append(member.step)
                self._skipped.add(member.step)
                reasons = "; ".join(p.message for p in result.problems)
                self._trail.add(
                    AuditKind.SKIPPED,
                    f"{member.step} left out of {group.group}: its handoff never passed ({reasons})",
                    step=member.step,
                    agent=member.agent_name,
                    group=group.group,
                )
                self._path.append(f"{member.step} left out")
        for member, result in zip(running, results, strict=True):
            if result.output is None and not member.optional:
                return FlowFailure("handoff", i, result.problems, member.step)
        ran = [m.step for m in running if m.step in self._outputs]
        self._outputs[group.group] = {"ran": ran, "left_out": left_out}
        self._view.describe(self._context())
        went: int | FlowFailure = i + 1
        if group.reviews is not None:
            went = self._resolve(i, group, [m for m in running if m.step in ran], left_out, feedback)
        if went != i + 1:
            return went  # revised or sent to people: the budget is checked when the flow runs on
        return self._over_budget(i) or went  # after the resolution, so waiving it skips no review

    def _resolve(
        self,
        i: int,
        group: GroupSpec,
        reviewers: list[MemberSpec],
        left_out: list[str],
        feedback: dict[str, list[Feedback]],
    ) -> int | FlowFailure:
        """Each reviewer's opinion, then the group's strategy: pass, revise or escalate."""
        context = self._context()
        opinions: list[Opinion] = []
        try:
            for member in reviewers:
                opinions.append(opinion_of(group, member, context))
        except RuleError as exc:
            problem = Feedback(source="guard", message=f"review could not be read: {exc}")
            return FlowFailure("handoff", i, [problem])
        for opinion in opinions:
            self._trail.add(
                AuditKind.OPINION,
                f"{opinion.member} says {opinion.verdict}"
                + "".join(f"; {f.message}" for f in opinion.findings),
                step=opinion.member,
                agent=self._spec.step(opinion.member).agent_name,
                group=group.group,
                verdict=opinion.verdict,
                effect=opinion.effect,
            )
        if not opinions and not left_out:
            resolution = Resolution("pass", group.passing_verdicts[0], "no reviewer was routed to this case")
        else:
            resolution = resolve(group, opinions)
        self._outputs[group.group] = {
            **self._outputs[group.group],
            "strategy": group.resolve,
            "verdict": resolution.verdict,
            "effect": resolution.effect,
            "opinions": {o.member: o.verdict for o in opinions},
            "decided_by": None,
        }
        self._trail.add(
            AuditKind.RESOLVED,
            f"{group.group} ({group.resolve}): {resolution.verdict} → {resolution.effect}; "
            + resolution.reason,
            step=group.group,
            strategy=group.resolve,
            verdict=resolution.verdict,
            effect=resolution.effect,
            opinions={o.member: o.verdict for o in opinions},
            left_out=left_out,
        )
        split = resolution.effect == "escalate" and group.resolve == "escalate_on_disagreement"
        self._path.append(f"{group.group}: {'split' if split else resolution.verdict}")
        assert group.reviews is not None
        if resolution.effect == "pass":
            return i + 1
        if resolution.effect == "escalate":
            return FlowFailure("people", i, resolution.findings, reason=resolution.reason)
        return self._send_back(i, group.reviews, group.max_rounds, resolution.findings, feedback)

    def _review(self, index: int) -> tuple[bool, list[Feedback]]:
        step = self._spec.flow[index]
        context = self._context()
        assert isinstance(step, StepSpec)
        assert step.passes is not None
        if evaluate_bool(step.passes, context):
            return True, []
        findings = findings_of(step.findings, context)
        return False, findings or [Feedback(source="review", message=f"{step.step} did not pass")]

    async def _after_flow(self, failure: FlowFailure | None) -> Next:
        return await self._escalate(failure) if failure is not None else await self._decide()

    async def _escalate(self, failure: FlowFailure) -> Next:
        """Hand a stuck case to people: run again, overrule the reviewer, or close."""
        at = failure.index - 1 if failure.kind == "budget" else failure.index
        item = self._spec.flow[at]
        name = failure.step or item.step
        agent = (
            None if isinstance(item, GroupSpec) and name == item.group else self._spec.step(name).agent_name
        )
        problems = "; ".join(p.message for p in failure.problems)
        if failure.kind == "budget":
            purpose = f"{problems}; approve = carry on without a budget"
        elif failure.kind == "handoff":
            purpose = f"handoff from {name} failed its checks ({problems}); approve = run it again"
        elif failure.kind == "people":
            found = f"; findings: {problems}" if problems else ""
            purpose = (
                f"{name} asks a person about {item.reviews}: {failure.reason}{found}; "
                "approve = accept it (the decision rules still apply)"
            )
        else:
            purpose = f"{name} still rejects {item.reviews} ({problems}); approve = act anyway"
        self._trail.add(AuditKind.ESCALATED, purpose, step=name, agent=agent)
        ladder = self._escalation_ladder(item, failure)
        if ladder is None:
            self._close(Outcome.REJECTED, f"safe default ({self._spec.on_timeout}): {purpose}")
            return Next("closed")
        self._path.append(f"escalated:{ladder}")
        result = await self._wait_for_people(ladder, purpose)
        if result.result == "request_changes":
            target = name if failure.kind == "handoff" else (item.reviews or self._spec.revision_step())
            return self._changes_to(target, result)
        if result.result != "approve":
            return self._close_after_people(result)
        if failure.kind == "budget":
            self._budget_waived = True
            return Next("rerun", start_at=failure.index)
        if failure.kind == "handoff":
            self._path.append("retry")
            return Next("rerun", start_at=failure.index)
        if failure.kind != "people" and not self._patches.since(OVERRULE_PATCH):
            return Next("act", result.deciders)
        self._overruled_by = result.deciders
        if isinstance(item, GroupSpec):
            self._outputs[item.group] = {
                **self._outputs[item.group],
                "verdict": item.passing_verdicts[0],
                "effect": "pass",
                "decided_by": result.deciders,
            }
        self._trail.add(
            AuditKind.DECISION,
            f"{result.deciders} overruled {name}; the rest of the flow and the decision rules apply",
            actor=result.deciders,
            step=name,
        )
        return Next("rerun", start_at=failure.index + 1)

    def _escalation_ladder(self, item: StepSpec | GroupSpec, failure: FlowFailure) -> str | None:
        """Who a stuck case goes to: a reviewing group's own ladder, else the spec's escalation."""
        if isinstance(item, GroupSpec) and failure.kind in ("people", "review") and item.ladder:
            return item.ladder
        return self._spec.escalation.ladder if self._spec.escalation else None

    async def _decide(self) -> Next:
        """Apply the first matching decision rule."""
        self._set_stage("deciding")
        context = self._context()
        for i, rule in enumerate(self._spec.decide):
            try:
                matched = rule.when is None or evaluate_bool(rule.when, context)
            except RuleError as exc:
                self._trail.add(AuditKind.DECISION, f"rule decide[{i}] failed: {exc}", rule=i)
                self._path.append("rule-error")
                self._close(Outcome.REJECTED, f"safe default: decision rule {i} failed to evaluate")
                return Next("closed")
            if not matched:
                continue
            self._trail.add(
                AuditKind.DECISION,
                f"decide[{i}] → {rule.outcome}" + (f" ({rule.reason})" if rule.reason else ""),
                rule=i,
                when=rule.when,
                outcome=rule.outcome,
            )
            self._path.append(rule.outcome)
            if rule.then == "auto":
                by = self._overruled_by
                return Next("act", f"{by}, then rules" if by else "rules")
            if rule.then == "reject":
                self._close(Outcome.REJECTED, rule.reason or f"decision rule {i} rejects")
                return Next("closed")
            purpose = rule.reason or f"decision rule {i} requires approval"
            result = await self._wait_for_people(rule.then.approval, purpose)
            if result.result == "request_changes":
                return self._changes_to(self._spec.revision_step(), result)
            if result.result != "approve":
                return self._close_after_people(result)
            return Next("act", result.deciders)
        raise AssertionError("validated specs end with a catch-all rule")

    def _changes_to(self, step: str, result: LadderResult) -> Next:
        """Send a person's feedback to ``step`` and run the flow again from there."""
        self._rounds.pop(step, None)  # a person's direction starts the review rounds afresh
        feedback = Feedback(source="human", message=result.comment, data={"by": result.deciders})
        self._trail.add(AuditKind.REVISION, f"{step} revises on {result.deciders}'s request", step=step)
        return Next("rerun", start_at=self._spec.step_index(step), feedback={step: [feedback]})

    async def _wait_for_people(self, ladder: str, purpose: str) -> LadderResult:
        self._set_stage(f"awaiting approval ({ladder})")
        await self._log_audit()  # what led here is in the tamper-evident log before anyone decides
        result = await self._desk.climb(ladder, purpose, proposal=self._proposal())
        self._path.extend(f"{role} timed out" for role in result.timed_out_roles)
        if result.records:
            self._path.append(f"{PAST[result.result]} by {result.deciders}")
        return result

    def _close_after_people(self, result: LadderResult) -> Next:
        if not result.records:
            self._path.append("timeout")
            self._close(Outcome.REJECTED, f"safe default ({self._spec.on_timeout}): nobody decided")
        else:
            comment = result.comment or "no reason given"
            self._close(Outcome.REJECTED, f"rejected by {result.deciders}: {comment}")
        return Next("closed")

    async def _act(self, decided_by: str) -> None:
        action = self._spec.action
        if action is None:  # advisory process: the decision and the checked handoffs are the result
            self._close(Outcome.APPROVED, f"decided by {decided_by}; the process has no action", decided_by)
            return
        info = workflow.info()
        # Unique per case even if its id were ever reused: the first run's id is part
        # of it (kept across continue-as-new). The key only enters the action's input,
        # which Temporal records when the action is scheduled, so a running case keeps
        # the key its action was first scheduled with.
        key = f"{info.workflow_id}/{info.first_execution_run_id}/{action.activity}"
        self._set_stage(f"acting ({action.activity})")
        try:
            done: ActionResult = await execute(
                action.activity,
                ActionInput(
                    idempotency_key=key,
                    case_id=self._start.case_id,
                    process=self._spec.process,
                    case=self._start.case,
                    handoffs=dict(self._outputs),
                    decided_by=decided_by,
                    approvals=list(self._desk.records),
                ),
                result_type=ActionResult,
                timeouts=action.timeouts,
                retry=action.retry,
                local=False,
                summary=f"action · {action.activity}",
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            message = failure_message(exc)
            self._trail.add(AuditKind.ACTION, f"action failed: {message}", idempotency_key=key)
            self._path.append("action✗")
            self._close(Outcome.ACTION_FAILED, message)
            return
        self._trail.add(
            AuditKind.ACTION,
            f"{action.activity} applied ({done.reference})"
            + ("" if done.applied_now else " by an earlier attempt"),
            idempotency_key=key,
            reference=done.reference,
            applied_now=done.applied_now,
        )
        self._path.append("action")
        self._close(Outcome.ACTIONED, f"decided by {decided_by}", decided_by, done)

    # -- helpers ------------------------------------------------------------

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self._spec.continue_as_new_after
        )

    async def _carry_on_in_a_new_run(self, step: Next) -> None:
        """Continue-as-new at a loop boundary, carrying the case's state, so history stays bounded."""
        runs = (self._start.resume.runs if self._start.resume else 1) + 1
        self._trail.add(
            AuditKind.CONTINUED,
            f"history reached {workflow.info().get_current_history_length()} events; "
            f"the case carries on in run {runs}",
        )
        await self._view.flush()
        await self._log_audit()
        resume = Resume(
            start_at=step.start_at,
            feedback=step.feedback,
            outputs=self._outputs,
            rounds=self._rounds,
            path=self._path,
            audit=self._trail.events,
            logged=self._trail.logged,
            usage=self._handoffs.usage,
            approvals=self._desk.records,
            budget_waived=self._budget_waived,
            runs=runs,
            refusals=self._desk.refused,
            overruled_by=self._overruled_by,
            skipped=sorted(self._skipped),
            signing_required=self._signing_required,
            drafts=self._drafts,
            decision_ids=self._desk.seen_ids,
        )
        workflow.continue_as_new(self._start.model_copy(update={"resume": resume}))

    async def _log_audit(self) -> None:
        """Append the events not yet logged to the hash-chained audit log (an activity)."""
        if not self._patches.since(AUDIT_LOG_PATCH) or self._trail.logged == len(self._trail.events):
            return
        info = workflow.info()
        batch = AuditBatch(
            case_id=self._start.case_id,
            process=self._spec.process,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            events=self._trail.events[self._trail.logged :],
        )
        stage = self._stage
        # Visible while the log refuses writes (full disk, read-only): the workers' logs
        # and the baton.audit.append_failures metric say why; Temporal keeps retrying.
        self._set_stage(f"{stage} · writing {len(batch.events)} events to the audit log")
        anchored = self._patches.since(AUDIT_ANCHOR_PATCH)
        receipt = await workflow.execute_local_activity(
            AUDIT_ACTIVITY,
            batch,
            result_type=AuditReceipt if anchored else int,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=AUDIT_RETRY,
            summary=f"audit log · {len(batch.events)} events",
        )
        if isinstance(receipt, AuditReceipt):
            workflow.upsert_memo({"audit_head": receipt.head, "audit_records": receipt.records})
        self._trail.logged = len(self._trail.events)
        self._set_stage(stage)

    def _proposal(self) -> str:
        """The digest of what people decide on: the case and every checked handoff."""
        proposal: JsonDict = {"case": self._start.case, "handoffs": self._outputs}
        if self._signing_required:  # a signed decision cannot be replayed on another run of the id
            proposal["run"] = workflow.info().first_execution_run_id
        return digest(proposal)

    def _context(self) -> JsonDict:
        skipped: JsonDict = dict.fromkeys(self._skipped)  # a skipped step reads as null
        return {
            "case": self._start.case,
            "overruled": self._overruled_by is not None,
            **skipped,
            **self._outputs,
        }

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        self._view.show(stage, self._desk.awaiting, self._outcome.value if self._outcome else None)

    def _close(
        self,
        outcome: Outcome,
        reason: str,
        decided_by: str | None = None,
        action: ActionResult | None = None,
    ) -> None:
        self._outcome, self._reason = outcome, reason
        self._decided_by, self._action = decided_by, action
        self._view.closed_by([record.approver for record in self._desk.records])
        self._set_stage(f"closed: {outcome.value}")
        self._trail.add(AuditKind.CASE_CLOSED, f"{outcome.value}: {reason}", outcome=outcome.value)

    def _result(self) -> CaseResult:
        assert self._outcome is not None, "every path closes the case before returning"
        assert self._reason is not None
        return CaseResult(
            case_id=self._start.case_id,
            process=self._spec.process,
            outcome=self._outcome,
            reason=self._reason,
            path=list(self._path),
            decided_by=self._decided_by,
            approvals=list(self._desk.records),
            action=self._action,
            handoffs=dict(self._outputs),
            usage=self._handoffs.usage,
            audit=list(self._trail.events),
            refusals=self._desk.refused,
        )


Decision = TypeVar("Decision", bound=HumanDecision)


def _parse(payload: RawValue, model: type[Decision]) -> Decision | str:
    """Decode a decision from outside: the model, or one line saying why it is not one."""
    try:
        value = workflow.payload_converter().from_payload(payload.payload, model)
    except ValidationError as exc:
        return excerpt("; ".join(validation_problems(exc)), 300)
    except Exception as exc:  # whatever else arrived, the answer is a refusal, not a crash
        return excerpt(" ".join(f"{type(exc).__name__}: {exc}".split()), 300)
    assert isinstance(value, model)
    return value
