"""The eval report's arithmetic: every figure, per arm, from the labelled cases and the runs.

Pure: no engine, no clock unless none is given, no I/O. What the figures mean:

- ``accuracy``/``correct``: runs whose end matches the label, over runs *without* an
  injected fault (the label describes the clean case; a corrupted one is judged by the
  fault figures instead, so containing a fault never counts against an arm). An
  ``actioned`` label needs outcome ``actioned`` and every expected action field within
  tolerance; ``rejected`` needs any outcome but ``actioned``/``approved``; ``escalated``
  needs the run to have waited on a person.
- ``wrong_actions``: runs that committed an action they should not have: the label is
  ``rejected``; the label is ``escalated`` and no person saw the case (a person approving
  an escalated case is the process working, not a wrong action); an expected action field
  is off beyond tolerance; or the run carried an injected fault (a corrupted case must
  never reach a committed action). ``wrong_value`` sums their ``amount`` where they have one.
- ``latency_p50_ms``/``latency_p95_ms``: nearest-rank percentiles: the value at 1-based
  rank ``ceil(p / 100 * n)`` of the sorted latencies, always an observed latency.
- ``cost``: tokens times the price table's per-million prices; ``None`` when a run with
  tokens names a model the table does not price (the notes say which).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from baton.contracts import validation_problems
from baton.errors import BatonUsageError
from baton.evals.cases import EvalCase, Expectation
from baton.evals.records import ARMS, Arm, CaseRun, FinalOutcome
from baton.rules import RuleError, evaluate_bool

Number = int | float


class Price(BaseModel):
    """What one model costs, per million tokens each way."""

    model_config = ConfigDict(extra="forbid")
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


_PRICES = TypeAdapter(dict[str, Price])


class ArmFigures(BaseModel):
    """One arm's figures; the field names are what ``--fail-if`` and ``--compare`` use."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    cases: int
    correct: int
    accuracy: float | None
    wrong_actions: int
    wrong_value: float
    escalation_rate: float
    human_touches_per_100: float
    input_tokens: int
    output_tokens: int
    cost: float | None
    latency_p50_ms: float
    latency_p95_ms: float
    faults_injected: int
    faults_reaching_action: int
    faults_contained: int


FIGURES: tuple[str, ...] = tuple(ArmFigures.model_fields)


class Report(BaseModel):
    """What ``baton eval`` reports: per-arm figures, where the arms disagree, and caveats.

    ``labels`` keeps each case's expectation so the report alone renders the per-case
    detail and a later ``--compare`` needs no case file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    process: str
    generated_at: datetime
    model_note: str | None = None
    arms: dict[Arm, ArmFigures]
    labels: dict[str, Expectation]
    disagreements: dict[str, dict[Arm, FinalOutcome]]
    notes: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        """The report as indented JSON (``report.json``)."""
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str, *, source: str = "report") -> Report:
        """Read a report written by :meth:`to_json`, e.g. ``--compare previous.json``.

        Raises:
            BatonUsageError: the text is not such a report (``source`` names it).
        """
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            listing = "\n".join(f"  {p}" for p in validation_problems(exc)[:10])
            raise BatonUsageError(f"{source}: not a baton eval report:\n{listing}") from None


@dataclass(frozen=True)
class Delta:
    """How one figure of one arm moved between two reports (``None``: absent or unknown)."""

    arm: Arm
    figure: str
    before: Number | None
    after: Number | None
    change: Number | None


def is_correct(expect: Expectation, run: CaseRun) -> bool:
    """Whether the run ended the way its label says (see the module docstring)."""
    if expect.outcome == "actioned":
        return run.outcome == "actioned" and not expect.action_mismatches(run.action)
    if expect.outcome == "rejected":
        return run.outcome not in ("actioned", "approved")
    return run.escalated


def is_wrong_action(expect: Expectation, run: CaseRun) -> bool:
    """Whether the run committed an action it should not have (see the module docstring)."""
    if run.outcome != "actioned":
        return False
    return bool(
        run.injected
        or expect.outcome == "rejected"
        or (expect.outcome == "escalated" and not run.escalated)
        or expect.action_mismatches(run.action)
    )


def nearest_rank(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: sorted ``values`` at 1-based rank ``ceil(percent/100*n)``.

    Chosen over interpolation because it is always a latency that was observed, and a
    person can check it by counting. ``0.0`` for no values.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def build_report(
    cases: Sequence[EvalCase],
    runs: Sequence[CaseRun],
    *,
    process: str,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    model_note: str | None = None,
    generated_at: datetime | None = None,
) -> Report:
    """Compute every figure for every arm that has runs.

    Args:
        cases: the labelled case set the runs came from.
        runs: one record per (case, arm); a later record for the same pair replaces an
            earlier one (a rerun of a case), and runs of cases not in ``cases`` are left
            out, each with a note.
        process: the process name, for the heading.
        prices: ``{model: {"input_per_million": x, "output_per_million": y}}``.
        model_note: what the runs measured, e.g. that a scripted stand-in answered.
        generated_at: when; now (UTC) if not given.

    Raises:
        BatonUsageError: the price table is malformed.
    """
    try:
        price_table = _PRICES.validate_python(dict(prices or {}))
    except ValidationError as exc:
        raise BatonUsageError("price table: " + "; ".join(validation_problems(exc))) from None
    labels = {case.id: case.expect for case in cases}
    notes: list[str] = []
    latest: dict[tuple[str, Arm], CaseRun] = {}
    unknown: set[str] = set()
    for run in runs:
        if run.case not in labels:
            unknown.add(run.case)
            continue
        latest[(run.case, run.arm)] = run
    if unknown:
        notes.append(f"{len(unknown)} case id(s) in the runs are not in the case set; left out")
    if len(latest) < len([r for r in runs if r.case in labels]):
        notes.append("some cases ran more than once in an arm; the last run counts")
    by_arm = {arm: [latest[(case, arm)] for case in labels if (case, arm) in latest] for arm in ARMS}
    figures = {arm: _figures(arm, done, labels, price_table, notes) for arm, done in by_arm.items() if done}
    return Report(
        process=process,
        generated_at=generated_at or datetime.now(UTC),
        model_note=model_note,
        arms=figures,
        labels=labels,
        disagreements=_disagreements(labels, latest),
        notes=notes,
    )


def _figures(
    arm: Arm, runs: list[CaseRun], labels: dict[str, Expectation], prices: dict[str, Price], notes: list[str]
) -> ArmFigures:
    clean = [run for run in runs if not run.injected]
    correct = sum(is_correct(labels[run.case], run) for run in clean)
    wrong = [run for run in runs if is_wrong_action(labels[run.case], run)]
    injected = [run for run in runs if run.injected]
    reaching = sum(run.outcome == "actioned" for run in injected)
    failed = sum(run.outcome == "failed" for run in runs)
    if failed:
        notes.append(f"{arm}: {failed} run(s) failed (the workflow failed or timed out)")
    latencies = [run.latency_ms for run in runs]
    return ArmFigures(
        cases=len(runs),
        correct=correct,
        accuracy=correct / len(clean) if clean else None,
        wrong_actions=len(wrong),
        wrong_value=float(sum(_amount(run) for run in wrong)),
        escalation_rate=sum(run.escalated for run in runs) / len(runs),
        human_touches_per_100=100 * sum(run.human_touches for run in runs) / len(runs),
        input_tokens=sum(run.input_tokens for run in runs),
        output_tokens=sum(run.output_tokens for run in runs),
        cost=_cost(arm, runs, prices, notes),
        latency_p50_ms=nearest_rank(latencies, 50),
        latency_p95_ms=nearest_rank(latencies, 95),
        faults_injected=len(injected),
        faults_reaching_action=reaching,
        faults_contained=len(injected) - reaching,
    )


def _amount(run: CaseRun) -> float:
    value = (run.action or {}).get("amount")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _cost(arm: Arm, runs: list[CaseRun], prices: dict[str, Price], notes: list[str]) -> float | None:
    """Tokens priced per model; a run that used no tokens costs nothing whatever its model."""
    total = 0.0
    unpriced: set[str] = set()
    for run in runs:
        if not run.input_tokens and not run.output_tokens:
            continue
        price = prices.get(run.model) if run.model else None
        if price is None:
            unpriced.add(run.model or "(no model recorded)")
            continue
        total += (
            run.input_tokens * price.input_per_million + run.output_tokens * price.output_per_million
        ) / 1e6
    if unpriced:
        notes.append(f"{arm}: no price for {', '.join(sorted(unpriced))}; cost not computed")
        return None
    return total


def _disagreements(
    labels: dict[str, Expectation], latest: dict[tuple[str, Arm], CaseRun]
) -> dict[str, dict[Arm, FinalOutcome]]:
    found: dict[str, dict[Arm, FinalOutcome]] = {}
    for case_id in labels:
        outcomes = {arm: latest[(case_id, arm)].outcome for arm in ARMS if (case_id, arm) in latest}
        if len(set(outcomes.values())) > 1:
            found[case_id] = outcomes
    return found


def compare(current: Report, previous: Report) -> list[Delta]:
    """Every figure of every arm in either report, before (``previous``) and after (``current``).

    ``change`` is ``after - before``, or ``None`` when either side is missing or unknown.
    """
    deltas = []
    for arm in ARMS:
        if arm not in current.arms and arm not in previous.arms:
            continue
        before_figures, after_figures = previous.arms.get(arm), current.arms.get(arm)
        for figure in FIGURES:
            before = getattr(before_figures, figure) if before_figures else None
            after = getattr(after_figures, figure) if after_figures else None
            change = after - before if before is not None and after is not None else None
            deltas.append(Delta(arm=arm, figure=figure, before=before, after=after, change=change))
    return deltas


def fail_if(report: Report, expression: str) -> bool:
    """Evaluate a ``--fail-if`` CEL expression over the report's figures.

    The governed arm's figures are top-level names (``wrong_actions > 0``), every arm's
    are under ``arms`` (``arms.unchecked.accuracy < 0.9``), and ``disagreements`` is the
    number of cases where the arms disagree. A figure that is unknown (``null``) only
    fails an expression that uses it.

    Raises:
        BatonUsageError: the expression does not compile, names no figure, or is not a
            boolean; the message names the expression and lists the figures.
    """
    context: dict[str, Any] = dict(report.arms["governed"].model_dump()) if "governed" in report.arms else {}
    context["arms"] = {arm: figures.model_dump() for arm, figures in report.arms.items()}
    context["disagreements"] = len(report.disagreements)
    try:
        return evaluate_bool(expression, context)
    except RuleError as exc:
        reason = str(exc).removeprefix(f"{expression!r}: ")
        raise BatonUsageError(
            f"--fail-if {expression!r}: {reason}\n  figures: {', '.join(FIGURES)}, disagreements;"
            f" per arm: arms.<{'|'.join(report.arms)}>.<figure>"
        ) from None
