"""Fault injection at the first handoff: a small data problem at step one, on purpose.

``baton eval --inject RATE`` corrupts the first handoff of a share of cases and counts how
many reached a committed action in each arm. A fault is a function of the handoff (as JSON
data) and a seeded ``random.Random`` that returns the corrupted handoff, or ``None`` when
the handoff has no field it could corrupt. The built-in kinds pick fields by name and type,
so they fit any app's contracts: ``wrong_customer``, ``inflated_amount``, ``missing_field``,
``stale_record``. An app adds its own by dotted path (``refunds.faults:wrong_sku``).

:func:`choose` says which cases get which fault, reproducibly. :class:`FaultInjector` is a
worker interceptor that corrupts what the spec's first step returns for those cases, local
activities included; :func:`intercepting` gives a client whose workers run it, so the
app's worker needs no change. A fault is a property of the data source: every run of the
first step of a chosen case (a re-run with feedback, a retry) gets the same corruption.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import temporalio.client
import temporalio.worker
from pydantic import BaseModel

from baton.errors import BatonUsageError
from baton.messages import AgentInput, JsonDict, LlmCall, LlmResult
from baton.spec.models import GroupSpec, ProcessSpec

Fault = Callable[[JsonDict, random.Random], JsonDict | None]
"""Corrupt a handoff (never mutating it); ``None``: this fault does not fit its shape."""

PARTY_IDS = ("customer_id", "employee_id", "user_id", "account_id", "client_id", "member_id", "patient_id")
"""Name endings of the field saying whose record this is (``wrong_customer`` changes it)."""
MONEY_WORDS = frozenset({"amount", "price", "total", "cost", "balance", "paid", "fee"})
"""Words in a number field's name that make it money (``inflated_amount`` multiplies it)."""
DATE_ENDINGS = ("_at", "_date", "_on", "_until")
STATUS_FLAGS = frozenset({"active", "enabled", "valid", "eligible", "refundable", "in_stock"})
"""Boolean fields whose value goes out of date (``stale_record`` flips one when there is no date)."""
_DIGITS = re.compile(r"\d+")


def wrong_customer(handoff: JsonDict, rng: random.Random) -> JsonDict | None:
    """Whose record it is, replaced by another id of the same form (``CUS-002`` → ``CUS-417``)."""
    for name, value in handoff.items():
        if name.endswith(PARTY_IDS) and isinstance(value, str):
            other = _another_id(value, rng)
            if other is not None:
                return {**handoff, name: other}
    return None


def inflated_amount(handoff: JsonDict, rng: random.Random) -> JsonDict | None:
    """The largest money field times 10, with any other money field of the same value (a record whose
    paid and refundable amounts agree stays consistent, so nothing inside it looks wrong)."""
    money = {name: value for name, value in handoff.items() if _is_money(name, value)}
    top = max(money.values(), default=0)
    if top <= 0:
        return None
    inflated = {name: round(value * 10, 2) for name, value in money.items() if value == top}
    return {**handoff, **inflated}


def missing_field(handoff: JsonDict, rng: random.Random) -> JsonDict | None:
    """The record's key removed: the first id field with a value (contracts declare the key first
    and require it, so the contract check must catch the gap), else the first field."""
    keys = [name for name, value in handoff.items() if value is not None and _is_id(name)]
    victim = keys[0] if keys else next(iter(handoff), None)
    if victim is None:
        return None
    return {name: value for name, value in handoff.items() if name != victim}


def stale_record(handoff: JsonDict, rng: random.Random) -> JsonDict | None:
    """The record as it stood long ago: its dates one to two years earlier (``days_since_*``
    counts grown to match), or, with no date, a status flag (``active``) flipped."""
    days = rng.randint(365, 730)
    moved = {name: _earlier(value, days) for name, value in handoff.items() if name.endswith(DATE_ENDINGS)}
    dates = {name: value for name, value in moved.items() if value is not None}
    if dates:
        ages = {
            name: value + days
            for name, value in handoff.items()
            if name.startswith("days_since") and isinstance(value, int) and not isinstance(value, bool)
        }
        return {**handoff, **dates, **ages}
    flags = [name for name, value in handoff.items() if isinstance(value, bool) and _is_status(name)]
    if not flags:
        return None
    return {**handoff, flags[0]: not handoff[flags[0]]}


FAULTS: dict[str, Fault] = {
    "wrong_customer": wrong_customer,
    "inflated_amount": inflated_amount,
    "missing_field": missing_field,
    "stale_record": stale_record,
}
"""The built-in kinds, by name."""


def fault(kind: str) -> Fault:
    """The fault called ``kind``: a built-in name, or an app's ``module:function``.

    Raises:
        BatonUsageError: no such built-in, or the dotted path does not import to a function.
    """
    if kind in FAULTS:
        return FAULTS[kind]
    module_name, sep, attr = kind.partition(":")
    if not sep or not module_name or not attr:
        raise BatonUsageError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)} or 'module:function'")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BatonUsageError(f"fault {kind!r} does not resolve: {exc}") from None
    if not callable(found):
        raise BatonUsageError(f"fault {kind!r} is not a function")
    corrupt: Fault = found
    return corrupt


def choose(case_ids: Iterable[str], rate: float, kinds: Sequence[str], seed: int | str) -> dict[str, str]:
    """Which cases get which fault: ``rate`` of them (rounded half up), the same on every run.

    Each case is ranked by a hash of the seed and its own id, so the choice does not depend
    on the order of the case set, and adding a case moves it only at the margin. The chosen
    cases take the kinds in turn, so each kind gets an equal share.

    Raises:
        BatonUsageError: ``rate`` outside 0..1, no kinds to inject, or a kind that does not resolve.
    """
    if not 0.0 <= rate <= 1.0:
        raise BatonUsageError(f"injection rate {rate} is not between 0 and 1")
    for kind in kinds:
        fault(kind)  # a kind that does not resolve fails before any case runs
    ids = list(dict.fromkeys(case_ids))
    count = math.floor(rate * len(ids) + 0.5)
    if count and not kinds:
        raise BatonUsageError("no fault kinds to inject")
    ranked = sorted(ids, key=lambda case: hashlib.sha256(f"{seed}\0{case}".encode()).hexdigest())
    return {case: kinds[i % len(kinds)] for i, case in enumerate(ranked[:count])}


def first_step(spec: ProcessSpec) -> str:
    """The step whose handoff comes first (a leading group's first member)."""
    head = spec.flow[0]
    return head.parallel[0].step if isinstance(head, GroupSpec) else head.step


class FaultInjector(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Corrupts the first handoff of the chosen cases, on the worker, and records what it did.

    Args:
        faults: fault kind by case key (from :func:`choose`).
        specs: the specs whose first step is corrupted (every arm's), matched by process name.
        seed: makes each case's corruption the same in every arm and on every run.
        case_key: maps the engine's case id (the workflow id) to the key ``faults`` uses,
            for a runner that runs one eval case as several workflows (one per arm).

    Attributes:
        applied: by engine case id, the kind actually applied, or ``None`` when the kind did
            not fit that handoff's shape (the case ran uncorrupted).
    """

    def __init__(
        self,
        faults: Mapping[str, str],
        *,
        specs: Iterable[ProcessSpec],
        seed: int | str = 0,
        case_key: Callable[[str], str] | None = None,
    ) -> None:
        self._kinds = {key: (kind, fault(kind)) for key, kind in faults.items()}
        self._first = {spec.process: first_step(spec) for spec in specs}
        self._seed = seed
        self._case_key = case_key or (lambda case_id: case_id)
        self.applied: dict[str, str | None] = {}

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        """Wrap every activity; only the chosen cases' first steps are touched."""
        return _CorruptFirstHandoff(next, self)

    def corrupt(self, request: AgentInput, output: Any) -> Any:
        """``output`` of ``request``'s agent, corrupted when its case and step were chosen."""
        if self._first.get(request.process) != request.step:
            return output
        key = self._case_key(request.case_id)
        if key not in self._kinds:
            return output
        kind, corrupt = self._kinds[key]
        rng = random.Random(f"{self._seed}\0{key}\0{kind}")  # noqa: S311 (reproducible faults, no secret)
        if isinstance(output, LlmResult):
            changed = corrupt(copy.deepcopy(output.output), rng)
            result: Any = None if changed is None else output.model_copy(update={"output": changed})
        elif isinstance(output, BaseModel | dict):
            # The engine reads every agent's output as a dict (result_type=dict), so a model
            # goes back as its JSON data, which can hold what the model never could.
            data = output.model_dump(mode="json") if isinstance(output, BaseModel) else copy.deepcopy(output)
            result = corrupt(data, rng)
        else:
            result = None
        self.applied[request.case_id] = None if result is None else kind
        return output if result is None else result


class _CorruptFirstHandoff(temporalio.worker.ActivityInboundInterceptor):
    def __init__(self, next: temporalio.worker.ActivityInboundInterceptor, injector: FaultInjector) -> None:
        super().__init__(next)
        self._injector = injector

    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        output = await self.next.execute_activity(input)
        request = _agent_input(input.args)
        return output if request is None else self._injector.corrupt(request, output)


def intercepting(client: temporalio.client.Client, injector: FaultInjector) -> temporalio.client.Client:
    """A client like ``client`` whose workers also run ``injector`` (a worker takes its client's
    worker interceptors), so ``build_worker`` and ``serve_app`` need no new option."""
    config = client.config()
    config["interceptors"] = [*config["interceptors"], injector]
    return temporalio.client.Client(**config)


def _agent_input(args: Sequence[Any]) -> AgentInput | None:
    """The agent request among an activity's arguments: a Python agent's, or an LLM call's."""
    arg = args[0] if len(args) == 1 else None
    if isinstance(arg, LlmCall):
        return arg.agent
    return arg if isinstance(arg, AgentInput) else None


def _another_id(value: str, rng: random.Random) -> str | None:
    """``value`` with its last number replaced by another of the same width."""
    runs = list(_DIGITS.finditer(value))
    if not runs:
        return None
    last = runs[-1]
    width, current = len(last.group()), int(last.group())
    top = 10**width - 1
    taken = 1 if 1 <= current <= top else 0
    if top - taken < 1:
        return None
    pick = rng.randint(1, top - taken)
    if taken and pick >= current:
        pick += 1
    return f"{value[: last.start()]}{pick:0{width}d}{value[last.end() :]}"


def _is_money(name: str, value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and bool(MONEY_WORDS & set(name.lower().split("_")))
    )


def _is_id(name: str) -> bool:
    return name == "id" or name.endswith("_id")


def _is_status(name: str) -> bool:
    return name in STATUS_FLAGS or name.startswith("is_") or name.endswith("_active")


def _earlier(value: Any, days: int) -> Any:
    """A date or timestamp (or its ISO text) ``days`` earlier; ``None`` if ``value`` is neither."""
    if isinstance(value, datetime | date):
        return value - timedelta(days=days)
    if not isinstance(value, str):
        return None
    for kind in (date, datetime):  # a bare date stays a bare date
        try:
            parsed = kind.fromisoformat(value)
        except ValueError:
            continue
        return (parsed - timedelta(days=days)).isoformat()
    return None
