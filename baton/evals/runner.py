"""Run a labelled case set through the arms on the real engine and report: ``baton eval``'s engine.

Each arm gets what a deployment would give it: the app's own worker (its activities, and its
scripted stand-in LLM from ``[dev] fake_llm`` unless a real model is asked for), a fresh task
queue, and a throwaway home whose data the app's ``seed`` has just created, so one arm's
committed refunds never change what the next arm's agents retrieve. The worker's client
carries the :class:`~baton.evals.inject.FaultInjector`, so corrupting the first handoff needs
nothing from the app.

A case waits on a person the way a scripted person in :mod:`baton.scenario` sees it: the
runner polls until the case waits, then sends the case's next ``human`` decision; each one
sent is a human touch. Approval rungs are shortened (``rung_timeout``), so a case that waits
with no scripted decision left ends by the ladder's safe default in seconds, not hours.

Every finished run is appended to ``out_dir/runs.jsonl`` at once: a rerun with the same
directory skips the (case, arm) pairs already there, and an interrupted eval (Ctrl-C) still
leaves a report of what finished. (A resumed arm runs on a freshly seeded home again, so a
case whose ``after`` predecessor finished in an earlier run sees the seed's data, not the
predecessor's refund.) Misuse (a process the app lacks, a bad option) raises
:class:`~baton.errors.BatonUsageError` before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import Client, WorkflowFailureError

from activities.llm.providers import load_providers_file
from baton.app import App
from baton.catalog import Catalog
from baton.client import BatonClient
from baton.contracts import validation_problems
from baton.errors import BatonUsageError
from baton.evals.arms import SingleAgent, arm_spec
from baton.evals.cases import EvalCase
from baton.evals.inject import FAULTS, FaultInjector, choose, intercepting
from baton.evals.records import ARMS, Arm, CaseRun, FinalOutcome
from baton.evals.render import write_outputs
from baton.evals.report import Price, Report, build_report
from baton.messages import AuditKind, CaseResult, JsonDict, Outcome
from baton.scenario import shortened, wait_for_approval
from baton.settings import Settings
from baton.spec import ProcessSpec, SpecSnapshot, snapshot_of
from baton.spec.models import GroupSpec
from baton.testing import serve_app, start_dev_server

Progress = Callable[[Arm, int, int], None]
_Model = TypeVar("_Model", bound=BaseModel)
"""Told ``(arm, finished, total)`` after each case of an arm ends (and once as the arm starts)."""

RUNS_FILE = "runs.jsonl"
FAKE_LLM_NOTE = "measures the governance mechanics with the scripted stand-in LLM, not a model"
SUBMITTER = "baton-eval"


class EvalOptions(BaseModel):
    """What an eval declares beside its case set (``cases.eval.yaml`` next to ``cases.jsonl``).

    Prices come from the providers file's ``prices:`` table; ``prices:`` here overrides it
    per model (a comparison at another price list).
    """

    model_config = ConfigDict(extra="forbid")
    single: SingleAgent | None = Field(default=None, description="The single arm's one agent.")
    prices: dict[str, Price] = Field(
        default_factory=dict, description="Per model, per million tokens; wins over the providers file's."
    )
    action_step: str | None = Field(
        default=None,
        description="The step whose handoff the action acts on (default: the single agent's step, "
        "else the last step that reviews nothing).",
    )


def options_path(cases_file: str | Path) -> Path:
    """Where an eval's options live: ``refunds.jsonl`` → ``refunds.eval.yaml`` beside it."""
    path = Path(cases_file)
    return path.with_name(path.stem + ".eval.yaml")


def load_options(path: str | Path, *, required: bool = False) -> EvalOptions:
    """Read eval options; an absent file is no options unless ``required``.

    Raises:
        BatonUsageError: the file is unreadable, not YAML, or has a wrong field (named).
    """
    source = Path(path)
    if not source.exists() and not required:
        return EvalOptions()
    return _read_yaml_model(source, EvalOptions, where=str(source))


def load_single(path: str | Path) -> SingleAgent:
    """Read ``--single FILE.yaml``: a :class:`SingleAgent` (step, provider, prompt, ...).

    Raises:
        BatonUsageError: the file is unreadable or not such an agent (fields named).
    """
    return _read_yaml_model(Path(path), SingleAgent, where=f"--single {path}")


def _read_yaml_model(source: Path, model: type[_Model], *, where: str) -> _Model:
    """A YAML file read as ``model``; every way it can be wrong is one line naming ``where``."""
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        return model.model_validate(raw or {})
    except OSError as exc:
        raise BatonUsageError(f"{where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BatonUsageError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise BatonUsageError(f"{where}: " + "; ".join(validation_problems(exc))) from None


def load_runs(path: Path, *, create: bool = False) -> tuple[list[CaseRun], int]:
    """The runs an earlier eval wrote, and how many lines could not be read.

    A line cut short by a crash is skipped, not fatal: its case simply runs again.
    With ``create``, the folder is made for the runs to come.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return [], 0
    runs, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            runs.append(CaseRun.model_validate_json(line))
        except ValidationError:
            bad += 1
    return runs, bad


def eval_case_of(engine_id: str) -> str:
    """``<eval-id>--<arm>--<token>`` → ``<eval-id>``: every arm of a case gets the same fault."""
    return engine_id.rsplit("--", 2)[0]


async def run_eval(
    app: App,
    process: str,
    cases: Sequence[EvalCase],
    *,
    out_dir: str | Path,
    arms: Iterable[Arm] = ARMS,
    inject_rate: float = 0.0,
    inject_kinds: Sequence[str] = tuple(FAULTS),
    seed: int = 0,
    concurrency: int = 8,
    single: SingleAgent | None = None,
    options: EvalOptions | None = None,
    use_existing_server: bool = False,
    client: Client | None = None,
    fake_llm: bool = True,
    case_timeout: float = 120.0,
    rung_timeout: timedelta | None = timedelta(seconds=10),
    progress: Progress | None = None,
) -> tuple[Report, list[CaseRun]]:
    """Run every case through every arm on the real engine; write and return the report.

    Args:
        app: the app whose process, worker and seed are measured.
        process: a process of the app (``refund-request``).
        cases: the labelled case set (:func:`~baton.evals.cases.load_cases`).
        out_dir: ``runs.jsonl`` (appended to, and read to resume), ``report.json``,
            ``report.html`` and ``chart.svg``.
        arms: which arms, in order; ``single`` is skipped (with a note) without a single agent.
        inject_rate: share of cases whose first handoff is corrupted (0..1).
        inject_kinds: fault kinds, built in or ``module:function``.
        seed: which cases get which fault, and how; the same seed repeats the eval.
        concurrency: cases running at once within an arm.
        single: the single arm's agent; default: ``options.single``.
        options: the eval's options (prices, single agent, action step).
        use_existing_server: connect to ``$TEMPORAL_ADDRESS`` instead of starting an
            embedded dev server on free ports (ignored when ``client`` is given).
        client: an already connected Temporal client (tests; the pydantic data converter).
        fake_llm: answer LLM agents from the app's scripted stand-in; false calls the providers.
        case_timeout: seconds one case may take, start to result, before it is recorded failed.
        rung_timeout: approval rungs shortened to this (None: as specified).
        progress: told how each arm advances.

    Returns:
        The report and every run it counts (earlier runs from ``runs.jsonl`` included).

    Raises:
        BatonUsageError: a bad option, process or single agent; nothing has started.
        asyncio.CancelledError: interrupted; the runs that finished are in the written report.
    """
    options = options or EvalOptions()
    single = single or options.single
    if concurrency < 1:
        raise BatonUsageError(f"--concurrency {concurrency}: at least 1")
    wanted = list(dict.fromkeys(arms))
    if not wanted:
        raise BatonUsageError("no arms to run")
    notes: list[str] = []
    app.activate()
    catalog = Catalog(app, Settings.for_app(app))
    governed = catalog.load(process)
    specs: dict[Arm, ProcessSpec] = {}
    for arm in wanted:
        if arm == "single" and single is None:
            notes.append(
                "single arm skipped: no single agent declared (eval options 'single:' or --single FILE.yaml)"
            )
            continue
        specs[arm] = arm_spec(governed.spec, arm, single, base_dir=app.root, wiring=catalog.wiring)
    faults = choose([c.id for c in cases], inject_rate, list(inject_kinds), seed)
    injector = FaultInjector(faults, specs=specs.values(), seed=seed, case_key=eval_case_of)
    out = Path(out_dir)
    runs_file = out / RUNS_FILE
    runs, unreadable = load_runs(runs_file, create=True)
    if unreadable:
        notes.append(f"{unreadable} unreadable line(s) in {RUNS_FILE} skipped; their cases ran again")
    scripted = fake_llm and app.dev_file("fake_llm") is not None
    context = _Context(
        cases=list(cases),
        injector=injector,
        runs=runs,
        runs_file=runs_file,
        token=uuid.uuid4().hex[:8],
        concurrency=concurrency,
        case_timeout=case_timeout,
        action_step=options.action_step or (single.step if single else None),
        progress=progress,
        arms=list(specs),
    )
    try:
        async with _temporal(client, use_existing_server) as temporal:
            for arm, spec in specs.items():
                snapshot = snapshot_of(spec, source=f"{governed.source} ({arm} arm)")
                if arm == "governed" and rung_timeout is not None:
                    snapshot = shortened(governed, rung_timeout)
                await _run_arm(app, intercepting(temporal, injector), arm, snapshot, context, fake_llm)
    finally:
        # Also on Ctrl-C: the partial report of what finished is written before the interrupt goes on.
        report = _report(
            process,
            context,
            runs,
            options,
            notes,
            scripted=scripted,
            providers=catalog.settings.providers_file,
        )
        write_outputs(report, runs, out)
    return report, runs


class _Context:
    """What every case of every arm shares: the case set, the injector, the runs so far."""

    def __init__(
        self,
        *,
        cases: list[EvalCase],
        injector: FaultInjector,
        runs: list[CaseRun],
        runs_file: Path,
        token: str,
        concurrency: int,
        case_timeout: float,
        action_step: str | None,
        progress: Progress | None,
        arms: list[Arm],
    ) -> None:
        self.cases = cases
        self.arms = arms
        self.injector = injector
        self.runs = runs
        self.runs_file = runs_file
        self.token = token
        self.concurrency = concurrency
        self.case_timeout = case_timeout
        self.action_step = action_step
        self.progress = progress

    def record(self, run: CaseRun) -> None:
        """Keep ``run`` and append it to ``runs.jsonl`` now, so an interruption loses no finished case."""
        self.runs.append(run)
        with self.runs_file.open("a", encoding="utf-8") as file:
            file.write(run.model_dump_json() + "\n")


@contextlib.asynccontextmanager
async def _temporal(client: Client | None, use_existing_server: bool) -> AsyncIterator[Client]:
    """The given client, one to ``$TEMPORAL_ADDRESS``, or an embedded dev server's (free ports, so a
    ``baton dev`` on 7233 is never disturbed), stopped afterwards."""
    if client is not None:
        yield client
    elif use_existing_server:
        from baton.connection import connect

        yield await connect()
    else:
        with _stdout_to_stderr():
            environment = await start_dev_server()
        async with environment:
            yield environment.client


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr while a child process starts, so it inherits that.

    The dev server prints a banner to the stdout it inherits, which would land in the
    middle of ``baton eval --json``'s report; this process's own stdout is restored after.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


async def _run_arm(
    app: App, client: Client, arm: Arm, snapshot: SpecSnapshot, context: _Context, fake_llm: bool
) -> None:
    """Every case not yet finished in ``arm``, at most ``concurrency`` at once, ``after`` honoured."""
    finished = {run.case for run in context.runs if run.arm == arm}
    todo = [case for case in context.cases if case.id not in finished]
    total = len(context.cases)
    done_count = total - len(todo)
    if context.progress:
        context.progress(arm, done_count, total)
    if not todo:
        return
    ended = {case.id: asyncio.Event() for case in context.cases}
    for case_id in finished:
        ended[case_id].set()
    gate = asyncio.Semaphore(context.concurrency)
    started: set[str] = set()
    action_step = context.action_step or _acting_step(snapshot.spec)
    with tempfile.TemporaryDirectory(prefix=f"baton-eval-{arm}-") as home:
        async with serve_app(app, client, home=Path(home), fake_llm=fake_llm) as harness:

            async def one(case: EvalCase) -> None:
                nonlocal done_count
                try:
                    if case.after is not None:
                        await ended[case.after].wait()  # before taking a slot: no deadlock on the gate
                    async with gate:
                        run = await _run_case(
                            harness.client, arm, snapshot, case, context, action_step, started
                        )
                    context.record(run)
                    done_count += 1
                    if context.progress:
                        context.progress(arm, done_count, total)
                finally:
                    ended[case.id].set()

            tasks = [asyncio.create_task(one(case), name=f"eval {arm} {case.id}") for case in todo]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await _stop(harness.client, started)
                raise


async def _stop(client: BatonClient, case_ids: Iterable[str]) -> None:
    """Terminate the cases an interrupted eval left running, so none lingers on a shared server."""
    for case_id in case_ids:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.handle(case_id).terminate("baton eval interrupted"), 5)


async def _run_case(
    client: BatonClient,
    arm: Arm,
    snapshot: SpecSnapshot,
    case: EvalCase,
    context: _Context,
    action_step: str | None,
    started: set[str],
) -> CaseRun:
    """One case through one arm: start it, play its scripted people, wait for the result."""
    engine_id = f"{case.id}--{arm}--{context.token}"
    began = time.monotonic()
    touches, waited = 0, False
    result: CaseResult | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(context.case_timeout):
            await client.start_case(snapshot, case.case, case_id=engine_id, submitted_by=SUBMITTER)
            started.add(engine_id)
            for person in case.human:
                status = await wait_for_approval(client, engine_id, timeout=context.case_timeout)
                if status.outcome is not None:
                    break
                waited = True
                touches += 1
                with contextlib.suppress(BatonUsageError):  # refused: the touch counts, the case still waits
                    await client.decide(
                        engine_id,
                        person.decide,
                        approver=person.as_,
                        comment=person.comment,
                        signal=person.signal,
                    )
            result = await client.result(engine_id)
            started.discard(engine_id)
    except TimeoutError:
        error = f"no result within {context.case_timeout:g}s"
        await _stop(client, [engine_id])
        started.discard(engine_id)
    except WorkflowFailureError as exc:
        error = f"the workflow failed: {exc.cause or exc}"
        started.discard(engine_id)
    except BatonUsageError as exc:  # the case does not fit the input contract: nothing started
        error = str(exc)
    latency_ms = (time.monotonic() - began) * 1000
    if result is None:
        return CaseRun(
            case=case.id,
            arm=arm,
            outcome="failed",
            escalated=waited,
            human_touches=touches,
            injected=context.injector.applied.get(engine_id),
            latency_ms=latency_ms,
            error=error,
        )
    outcome: FinalOutcome = result.outcome.value
    requested = any(event.kind == AuditKind.APPROVAL_REQUESTED for event in result.audit)
    return CaseRun(
        case=case.id,
        arm=arm,
        outcome=outcome,
        escalated=waited or requested,
        human_touches=touches,
        action=_acted_on(result, action_step) if result.outcome == Outcome.ACTIONED else None,
        injected=context.injector.applied.get(engine_id),
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        model=_model(result),
        latency_ms=latency_ms,
        path=result.path,
    )


def _acting_step(spec: ProcessSpec) -> str | None:
    """The last step that produces work (reviews nothing): the handoff an action acts on, by default."""
    producers: list[str] = []
    for item in spec.flow:
        if isinstance(item, GroupSpec):
            if item.reviews is None:
                producers += [member.step for member in item.parallel]
        elif item.reviews is None:
            producers.append(item.step)
    return producers[-1] if producers else None


def _acted_on(result: CaseResult, step: str | None) -> JsonDict:
    """The handoff the committed action acted on; the last handoff when no step is known."""
    if step is not None and step in result.handoffs:
        return result.handoffs[step]
    return next(reversed(result.handoffs.values()), {})


def _model(result: CaseResult) -> str | None:
    """The model that spent the case's tokens (the most used, when several answered)."""
    used = Counter(
        str(event.data["model"])
        for event in result.audit
        if event.kind == AuditKind.HANDOFF and event.data.get("model")
    )
    return used.most_common(1)[0][0] if used else None


def _report(
    process: str,
    context: _Context,
    runs: list[CaseRun],
    options: EvalOptions,
    notes: list[str],
    *,
    scripted: bool,
    providers: Path,
) -> Report:
    """The report of ``runs`` with this eval's caveats added to the arithmetic's own notes."""
    listed = load_providers_file(providers).prices
    prices: Mapping[str, Mapping[str, float]] = {
        **{m: p.model_dump() for m, p in listed.items()},
        **{m: p.model_dump() for m, p in options.prices.items()},
    }
    models = sorted({run.model for run in runs if run.model})
    if scripted:
        note: str | None = FAKE_LLM_NOTE
    elif models:
        note = "models: " + ", ".join(models)
    else:
        note = "no LLM agent answered: the runs measure the process's own agents"
    report = build_report(context.cases, runs, process=process, prices=prices, model_note=note)
    done = {(run.case, run.arm) for run in runs if run.arm in context.arms}
    expected = len(context.cases) * len(context.arms)
    extra = list(notes)
    if len(done) < expected:
        extra.append(f"partial: {len(done)} of {expected} case runs finished")
    return report.model_copy(update={"notes": [*report.notes, *extra]})
