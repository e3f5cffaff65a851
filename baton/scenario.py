"""Scripted cases with expectations: what ``baton demo`` runs and what an app's tests replay.

A scenario file (``[dev] scenario`` in the app file) lists cases, what people
do when each case waits, and the outcome and path each must reach::

    rung_timeout: 3s                 # approval rungs shortened, so timeouts show in seconds
    cases:
      - slug: approval
        title: approved by a lead after an unauthorised attempt
        process: refund-request
        case: {order_id: ORD-1002, customer_id: CUS-002, requested_amount: 249.0, reason: defective}
        people:                      # sent in order, each once the case waits on a person
          - {decide: approve, as: bob, signal: true}   # a signal: its refusal is audited
          - {decide: approve, as: alice, comment: verified defect}
        expect: {outcome: actioned, path: [approval:standard, approved by alice, action]}

``case_file`` (a JSON or YAML file beside the scenario) may stand for ``case``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton.client import BatonClient
from baton.contracts import validation_problems
from baton.durations import Duration
from baton.errors import BatonUsageError
from baton.messages import CaseResult, CaseStatus, Verdict
from baton.spec import ProcessSpec, SpecSnapshot, snapshot_of


class Person(BaseModel):
    """One decision a person sends once the case waits."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    decide: Verdict
    as_: str = Field(alias="as", min_length=1)
    comment: str = ""
    signal: bool = False


class Expect(BaseModel):
    """The outcome a case must reach and path elements it must pass, in order."""

    model_config = ConfigDict(extra="forbid")
    outcome: str
    path: list[str] = Field(default_factory=list)


class ScenarioCase(BaseModel):
    """One scripted case."""

    model_config = ConfigDict(extra="forbid")
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = ""
    process: str
    case: dict[str, Any] | None = None
    case_file: str | None = None
    people: list[Person] = Field(default_factory=list)
    expect: Expect

    @model_validator(mode="after")
    def _one_case(self) -> ScenarioCase:
        if (self.case is None) == (self.case_file is None):
            raise ValueError("give exactly one of 'case' and 'case_file'")
        return self


class Scenario(BaseModel):
    """A scenario file."""

    model_config = ConfigDict(extra="forbid")
    rung_timeout: Duration | None = timedelta(seconds=3)
    cases: list[ScenarioCase] = Field(min_length=1)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario file; a clear error names the file and field."""
        source = Path(path)
        try:
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
            return cls.model_validate({**(raw or {}), "base_dir": source.parent})
        except OSError as exc:
            raise BatonUsageError(f"scenario {source}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise BatonUsageError(f"scenario {source}: {exc}") from None
        except ValidationError as exc:
            raise BatonUsageError(f"scenario {source}: " + "; ".join(validation_problems(exc))) from None

    def case_input(self, case: ScenarioCase) -> dict[str, Any]:
        """The case's input, from ``case`` or its ``case_file``."""
        if case.case is not None:
            return case.case
        path = self.base_dir / str(case.case_file)
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        if not isinstance(data, dict):
            raise BatonUsageError(f"{path}: a case must be a JSON object")
        return data

    def only(self, *slugs: str) -> Scenario:
        """The same scenario with only the named cases (in script order)."""
        return self.model_copy(update={"cases": [c for c in self.cases if c.slug in slugs]})


@dataclass
class CaseReport:
    """What happened to one scripted case and whether it matched the script."""

    scripted: ScenarioCase
    case_id: str
    result: CaseResult

    @property
    def ok(self) -> bool:
        """Outcome as expected and every expected path element present, in order."""
        remaining = iter(self.result.path)
        expected = self.scripted.expect
        in_order = all(any(step == seen for seen in remaining) for step in expected.path)
        return self.result.outcome.value == expected.outcome and in_order

    def line(self) -> str:
        """One printable entry: id, title, path, outcome."""
        mark = "ok " if self.ok else "!! "
        path = " → ".join(self.result.path)
        outcome = f"{self.result.outcome.value}: {self.result.reason}"
        if self.result.usage.calls:
            u = self.result.usage
            outcome += f" [{u.calls} LLM calls, {u.input_tokens}+{u.output_tokens} tokens]"
        return f"{mark}{self.case_id}  [{self.scripted.title}]\n      {path}\n      ⇒ {outcome}"


def shortened(snapshot: SpecSnapshot, rung_timeout: timedelta) -> SpecSnapshot:
    """``snapshot`` with every approval rung shortened, so a demo sees timeouts."""
    spec = snapshot.spec
    ladders = {
        name: [
            rung.model_copy(
                update={"timeout": rung_timeout, "remind": rung_timeout * 2 / 3 if rung.remind else None}
            )
            for rung in rungs
        ]
        for name, rungs in spec.ladders.items()
    }
    short = ProcessSpec.model_validate(spec.model_copy(update={"ladders": ladders}).model_dump())
    return snapshot_of(short, source=f"{snapshot.source} (rungs {rung_timeout.total_seconds():g}s)")


async def run_scenario(client: BatonClient, scenario: Scenario, *, prefix: str) -> list[CaseReport]:
    """Run every scripted case concurrently; reports come back in script order."""
    snapshots: dict[str, SpecSnapshot] = {}
    for process in {c.process for c in scenario.cases}:
        snapshot = client.load(process)
        snapshots[process] = shortened(snapshot, scenario.rung_timeout) if scenario.rung_timeout else snapshot

    async def one(index: int, scripted: ScenarioCase) -> CaseReport:
        case_id = await client.start_case(
            snapshots[scripted.process],
            scenario.case_input(scripted),
            case_id=f"{prefix}-{index}-{scripted.slug}",
            submitted_by="demo",
        )
        for person in scripted.people:
            await wait_for_approval(client, case_id)
            try:
                await client.decide(
                    case_id, person.decide, approver=person.as_, comment=person.comment, signal=person.signal
                )
            except BatonUsageError:
                break  # off script (e.g. the case did not wait): its report will say so
        return CaseReport(scripted, case_id, await client.result(case_id))

    return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(scenario.cases, 1))))


async def wait_for_approval(client: BatonClient, case_id: str, *, timeout: float = 30) -> CaseStatus:
    """Poll the case until it waits on a ladder (as a person watching the inbox would)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await client.status(case_id)
        if status.awaiting is not None or status.outcome is not None:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"{case_id} never reached an approval (stage: {status.stage})")
        await asyncio.sleep(0.1)
