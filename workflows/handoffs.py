"""Running one agent and checking its handoff before anyone else sees it.

An agent's output flows on only if it validates against the agent's output
contract and every guard of the step is true. Otherwise the agent runs again
with the problems as feedback, up to the step's ``check_attempts``; if it still
fails, the caller escalates. This is where an error at step one is stopped from
becoming a confident wrong action at step five.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from workflows.trail import AuditTrail

with workflow.unsafe.imports_passed_through():
    from baton.contracts import check_against, resolve_contract
    from baton.digests import digest
    from baton.messages import AgentInput, AuditKind, Feedback, JsonDict, LlmCall, LlmResult, Usage
    from baton.rules import RuleError, evaluate_bool
    from baton.spec.models import AgentSpec, ProcessSpec, RetrySpec, StepSpec, TimeoutSpec

INVALID_REPLY_USAGE_PATCH = "llm-invalid-reply-usage-v1"
"""Tokens of a reply that never met its contract count toward the case (and its budget).

Cases that failed such a reply before this change replay without it, so a budget
decision made then is made the same way on replay."""


@dataclass
class HandoffResult:
    """A checked handoff (``output``) or the problems that stopped it."""

    output: JsonDict | None
    problems: list[Feedback] = field(default_factory=list)
    failed_attempts: int = 0


def retry_policy(spec: RetrySpec) -> RetryPolicy:
    """Translate a spec's retry block to Temporal's policy (Temporal owns retries)."""
    return RetryPolicy(
        initial_interval=spec.initial_interval,
        backoff_coefficient=spec.backoff,
        maximum_interval=spec.max_interval,
        maximum_attempts=spec.max_attempts,
        non_retryable_error_types=list(spec.non_retryable) or None,
    )


async def execute(
    activity: str,
    arg: Any,
    *,
    result_type: type,
    timeouts: TimeoutSpec,
    retry: RetrySpec,
    local: bool,
    summary: str,
) -> Any:
    """Run an activity (or local activity) with a spec's timeouts and retry policy."""
    if local:
        return await workflow.execute_local_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=timeouts.start_to_close,
            schedule_to_close_timeout=timeouts.schedule_to_close,
            retry_policy=retry_policy(retry),
            summary=summary,
        )
    return await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timeouts.start_to_close,
        schedule_to_close_timeout=timeouts.schedule_to_close,
        heartbeat_timeout=timeouts.heartbeat,
        retry_policy=retry_policy(retry),
        summary=summary,
        # A cancelled case waits until its agents have stopped, so the history shows it.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


def _root_cause(exc: ActivityError) -> BaseException | None:
    cause: BaseException | None = exc.cause
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return cause


def failure_message(exc: ActivityError) -> str:
    """The root cause of an activity failure, without a Python traceback."""
    cause = _root_cause(exc)
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or exc)


class HandoffRunner:
    """Runs a step's agent and checks the handoff, re-running with feedback when it fails."""

    def __init__(
        self,
        spec: ProcessSpec,
        case_id: str,
        case: JsonDict,
        trail: AuditTrail,
        *,
        since: Callable[[str], bool] = workflow.patched,
    ) -> None:
        self._since = since
        self._spec = spec
        self._case_id = case_id
        self._case = case
        self._trail = trail
        self.usage = Usage()

    async def run(
        self,
        step: StepSpec,
        outputs: dict[str, JsonDict],
        feedback: list[Feedback],
        *,
        revision: int,
    ) -> HandoffResult:
        """Produce a checked handoff for ``step`` or the problems of its last attempt."""
        agent = self._spec.agents[step.agent_name]
        problems: list[Feedback] = []
        for attempt in range(1, step.check_attempts + 1):
            spent_on_failure: JsonDict = {}
            request = AgentInput(
                case_id=self._case_id,
                process=self._spec.process,
                step=step.step,
                agent=step.agent_name,
                attempt=attempt,
                revision=revision,
                case=self._case if step.sees is None or "case" in step.sees else {},
                handoffs=_seen(step, outputs),
                feedback=feedback,
            )
            try:
                raw, spent = await self._call(agent, request, _summary(step.agent_name, revision, attempt))
            except ActivityError as exc:
                if is_cancelled_exception(exc):
                    raise  # the case is being cancelled: no further attempts, no escalation
                problems = [Feedback(source="agent_error", message=failure_message(exc))]
                wasted = _usage_of_invalid_reply(exc)
                if wasted is not None and self._since(INVALID_REPLY_USAGE_PATCH):
                    self.usage = self.usage + wasted
                    spent_on_failure = wasted.model_dump()
            else:
                extra = {} if spent is None else {"model": spent[1], **spent[0].model_dump()}
                self._trail.add(
                    AuditKind.HANDOFF,
                    f"{step.agent_name} handed off {_contract_name(agent)}",
                    step=step.step,
                    agent=step.agent_name,
                    attempt=attempt,
                    revision=revision,
                    output_sha256=digest(raw),
                    **extra,
                )
                checked, problems = self._check(step, agent, raw, outputs)
                if checked is not None:
                    self._trail.add(
                        AuditKind.CHECK_PASSED,
                        f"{step.step}: contract and {len(step.guards)} guard(s) passed",
                        step=step.step,
                        agent=step.agent_name,
                        guards=[g.expr for g in step.guards],
                    )
                    return HandoffResult(checked, failed_attempts=attempt - 1)
            self._trail.add(
                AuditKind.CHECK_FAILED,
                f"{step.step}: " + "; ".join(p.message for p in problems),
                step=step.step,
                agent=step.agent_name,
                attempt=attempt,
                problems=[p.model_dump() for p in problems],
                **spent_on_failure,
            )
            feedback = problems
        return HandoffResult(None, problems, failed_attempts=step.check_attempts)

    async def _call(
        self, agent: AgentSpec, request: AgentInput, summary: str
    ) -> tuple[Any, tuple[Usage, str] | None]:
        """Run the agent's activity; for an LLM agent also return what the call cost."""
        if agent.kind != "llm":
            raw = await execute(
                agent.activity_name,
                request,
                result_type=dict,
                timeouts=agent.timeouts,
                retry=agent.retry,
                local=agent.local,
                summary=summary,
            )
            return raw, None
        assert agent.prompt_text is not None
        call = LlmCall(
            agent=request,
            provider=agent.provider,
            model=agent.model,
            prompt=agent.prompt_text,
            contract=agent.output,
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
            repair_attempts=agent.repair_attempts,
        )
        result: LlmResult = await execute(
            agent.activity_name,
            call,
            result_type=LlmResult,
            timeouts=agent.timeouts,
            retry=agent.retry,
            local=False,
            summary=f"{summary} · {agent.model or agent.provider}",
        )
        self.usage = self.usage + result.usage
        return result.output, (result.usage, result.model)

    def _check(
        self, step: StepSpec, agent: AgentSpec, raw: Any, outputs: dict[str, JsonDict]
    ) -> tuple[JsonDict | None, list[Feedback]]:
        with workflow.unsafe.imports_passed_through():
            model = resolve_contract(agent.output)
        checked, errors = check_against(model, raw)
        if checked is None:
            name = _contract_name(agent)
            return None, [Feedback(source="contract", message=f"{name}.{e}") for e in errors]
        context = {"case": self._case, **outputs, step.step: checked}
        problems: list[Feedback] = []
        for guard in step.guards:
            try:
                ok = evaluate_bool(guard.expr, context)
            except RuleError as exc:
                problems.append(Feedback(source="guard", message=f"guard could not run: {exc}"))
                continue
            if not ok:
                message = guard.message or f"guard failed: {guard.expr}"
                problems.append(Feedback(source="guard", message=message, data={"expr": guard.expr}))
        return (None, problems) if problems else (checked, [])


def _usage_of_invalid_reply(exc: ActivityError) -> Usage | None:
    """The tokens an ``LlmOutputInvalid`` failure reports in its details, if it is one."""
    cause = _root_cause(exc)
    if not isinstance(cause, ApplicationError) or cause.type != "LlmOutputInvalid" or not cause.details:
        return None
    details = cause.details[0]
    if not isinstance(details, dict) or not isinstance(details.get("usage"), dict):
        return None
    try:
        return Usage.model_validate(details["usage"])
    except ValueError:  # pydantic's ValidationError: details from an unexpected sender
        return None


def _contract_name(agent: AgentSpec) -> str:
    return agent.output.rpartition(":")[2]


def _seen(step: StepSpec, outputs: dict[str, JsonDict]) -> dict[str, JsonDict]:
    """The earlier handoffs ``step`` may see: all of them, or only those its ``sees`` names."""
    if step.sees is None:
        return dict(outputs)
    return {name: output for name, output in outputs.items() if name in step.sees}


def _summary(agent: str, revision: int, attempt: int) -> str:
    """Activity summary the Temporal UI shows: ``drafter · revision 2 · attempt 2``."""
    parts = [agent]
    if revision:
        parts.append(f"revision {revision}")
    if attempt > 1:
        parts.append(f"attempt {attempt}")
    return " · ".join(parts)
