"""The ``baton`` command line: a thin layer over :mod:`baton.client`.

Exit codes: 0 success, 1 runtime failure (server unreachable, case failed to
complete), 2 usage error (bad spec, bad case file, unknown case). Errors go to
stderr, one problem per line; data goes to stdout (``--json`` where it is data).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baton import auditlog, search, telemetry, traces
from baton.app import App
from baton.casefile import read_case_file
from baton.catalog import Catalog
from baton.client import BatonClient, PendingCase
from baton.errors import BatonRuntimeError, BatonUsageError, SpecError
from baton.messages import AuditEvent, CaseStatus, Verdict
from baton.safetext import printable
from baton.settings import Settings
from baton.show import format_casefile
from baton.spec.diagram import mermaid

if TYPE_CHECKING:
    from baton.evals.report import Report

VERDICTS: dict[str, Verdict] = {
    "approve": "approve",
    "reject": "reject",
    "request-changes": "request_changes",
}
Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _dump(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
    return json.dumps(value, indent=2, ensure_ascii=False)


def _app(args: argparse.Namespace, *, required: bool = False) -> App | None:
    """The app this command works on (``--app``, ``$BATON_APP``, or found upwards), activated."""
    app = App.require(explicit=args.app) if required else App.find(explicit=args.app)
    if app is not None:
        app.activate()
    return app


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.for_app(App.find(explicit=args.app))


async def _client(args: argparse.Namespace, *, app: App | None = None) -> BatonClient:
    return await BatonClient.connect(
        address=args.address, namespace=args.namespace, profile=args.profile, app=app
    )


def _catalog(args: argparse.Namespace) -> Catalog:
    """Specs by name in the app (or by path), checked against its wiring: no connection needed."""
    app = _app(args)
    settings = Settings.for_app(app)
    if getattr(args, "roles", None):
        settings = dataclasses.replace(settings, roles_file=Path(args.roles))
    return Catalog(app, settings)


async def cmd_validate(args: argparse.Namespace) -> int:
    client = _catalog(args)
    if args.process:
        targets = [client.resolve(args.process)]
    elif client.app is not None:
        targets = list(client.app.processes().values())
    else:
        raise BatonUsageError(
            "name a spec file, or run in an app (or pass --app) to validate all its processes"
        )
    results: list[dict[str, Any]] = []
    for path in targets:
        try:
            spec = client.wiring.load(path)
        except SpecError as exc:
            results.append({"ok": False, "source": exc.source, "problems": exc.problems})
            if not args.json:
                for problem in exc.problems:
                    print(f"{exc.source}: {problem}", file=sys.stderr)
            continue
        results.append({"ok": True, "source": str(path), "process": spec.process,
                        "version": spec.version, "sha256": spec.sha256()})  # fmt: skip
        if not args.json:
            print(f"ok {spec.process}" if len(targets) > 1 else "ok")
    if args.json:
        print(json.dumps(results[0] if args.process else results, indent=2))
    if client.app is None and not args.json:
        print("(no app: activities were not checked; run in an app or pass --app)", file=sys.stderr)
    return 0 if all(r["ok"] for r in results) else 2


async def cmd_diagram(args: argparse.Namespace) -> int:
    client = _catalog(args)
    print(mermaid(client.wiring.load(client.resolve(args.process))), end="")
    return 0


async def cmd_start(args: argparse.Namespace) -> int:
    case = read_case_file(args.case)
    catalog = _catalog(args)
    snapshot = catalog.load(args.process)  # the spec and its wiring, checked before connecting
    client = await _client(args, app=catalog.app)
    case_id = await client.start_case(snapshot, case, case_id=args.id, submitted_by=args.user)
    if not args.wait:
        print(json.dumps({"case_id": case_id}) if args.json else printable(case_id))
        return 0
    result = await client.result(case_id)
    if args.json:
        print(_dump(result))
    else:
        print(f"{printable(case_id)}: {result.outcome.value} ({printable(result.reason)})")
        print(f"  path: {_path(result.path)}")
    return 0


async def cmd_signing_key(args: argparse.Namespace) -> int:
    from baton.signing import new_ed25519_pair

    private, public = new_ed25519_pair(args.id)
    print(f"# the sender (the approval gateway) only:\n{private}")
    print(f"# every worker:\n{public}")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    found = await (await _client(args)).casefile(args.case_id)
    print(_dump(found) if args.json else "\n".join(format_casefile(found)))
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    status = await (await _client(args)).status(args.case_id)
    if args.json:
        print(_dump(status))
        return 0
    print("\n".join(format_status(status)))
    return 0


def format_status(status: CaseStatus) -> list[str]:
    """The lines ``baton status`` prints; every value from outside escaped (:func:`printable`)."""
    lines = [
        f"{printable(status.case_id)}  {printable(status.process)} v{status.spec_version}  "
        f"spec {printable(status.spec_sha256[:12])}",
        f"  stage:   {printable(status.stage)}",
        f"  path:    {_path(status.path)}",
    ]
    if status.awaiting:
        a = status.awaiting
        until = f"until {a.deadline.isoformat()}" if a.deadline else "(held, no deadline)"
        lines.append(
            f"  waiting: {printable(a.role)} (ladder {printable(a.ladder)}, rung {a.rung}/{a.rungs}) {until}"
        )
        lines.append(f"           {printable(a.purpose)}")
    if status.usage.calls:
        u = status.usage
        lines.append(f"  LLM:     {u.calls} calls, {u.input_tokens} input + {u.output_tokens} output tokens")
    if status.refusals:
        lines.append(f"  refused: {status.refusals} decision(s) (`baton audit` itemises the first 25)")
    if status.outcome:
        lines.append(f"  outcome: {status.outcome.value}: {printable(status.reason)}")
    return lines


def _path(steps: list[str]) -> str:
    return " → ".join(printable(step) for step in steps) or "-"


async def cmd_codec_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from baton.codec import load_codec
    from baton.codecserver import make_app

    codec = load_codec()
    token = os.environ.get("BATON_CODEC_TOKEN", "")
    if codec is None or not token:
        raise BatonUsageError("codec-server needs BATON_CODEC_KEYS (or _FILE) and BATON_CODEC_TOKEN")
    runner = web.AppRunner(make_app(codec, token=token, origins=args.origin))
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    origins = ", ".join(args.origin)
    print(f"codec server on http://{args.host}:{args.port} (/encode, /decode), CORS for {origins}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0


async def cmd_fake_llm(args: argparse.Namespace) -> int:
    from baton.fakellm import FakeLlmServer, FakeScript

    server = FakeLlmServer(FakeScript.load(args.script), host=args.host, port=args.port)
    await server.start()
    print(f"scripted OpenAI-compatible server (a stand-in, not a model) at {server.base_url}")
    print(f"  export OPENAI_BASE_URL={server.base_url}    Ctrl-C stops it")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
    return 0


async def cmd_decide(args: argparse.Namespace) -> int:
    client = await _client(args)
    verdict: Verdict = VERDICTS[args.command]
    comment = {"approve": "comment", "reject": "reason", "request_changes": "feedback"}[verdict]
    proposal = args.proposal
    keys = client.signing_keys
    if proposal is None and keys is not None and keys.can_sign and not keys.development:
        raise BatonUsageError(
            f"a signed decision must name what you reviewed: pass --proposal from "
            f"`baton show {printable(args.case_id)}`"
        )
    if proposal is None:
        proposal = await client.current_proposal(args.case_id)
        if proposal is not None:
            print(
                f"no --proposal given: deciding on the proposal as it is now ({proposal[:12]}); "
                f"pass --proposal from `baton show {printable(args.case_id)}` "
                "to bind it to what you reviewed",
                file=sys.stderr,
            )
    receipt = await client.decide(
        args.case_id,
        verdict,
        approver=args.user,
        comment=getattr(args, comment),
        decision_id=args.decision_id,
        signal=args.signal,
        proposal=proposal,
    )
    if receipt is None:
        print(
            f"{verdict} sent as a signal for {printable(args.case_id)} as {printable(args.user)}; "
            f"`baton audit {printable(args.case_id)}` shows whether the case accepted it"
        )
    else:
        print(f"{printable(args.case_id)}: {printable(receipt.state)}")
    return 0


async def cmd_pending(args: argparse.Namespace) -> int:
    cases = await (await _client(args)).pending(role=args.role)
    if args.json:
        print(
            json.dumps(
                [
                    {**asdict(c, dict_factory=_without_memo), "age_seconds": round(c.age_seconds)}
                    for c in cases
                ],
                default=str,
                indent=2,
            )
        )
        return 0
    if not cases:
        print("nothing waiting" + (f" for {printable(args.role)}" if args.role else ""))
        return 0
    for c in cases:
        print(format_pending(c))
    return 0


def format_pending(c: PendingCase) -> str:
    """One line of ``baton pending``; case id, role and summary escaped (:func:`printable`)."""
    deadline = c.deadline.isoformat(timespec="seconds") if c.deadline else "held"
    amount = f"{c.amount:>10.2f}" if c.amount is not None else " " * 10
    return (
        f"{printable(c.case_id)}  {printable(c.role):<16} age {_age(c.age_seconds):>6}  {amount}  "
        f"due {deadline}  {printable(c.summary)}"
        + (f"  [proposal {printable(c.proposal[:12])}]" if c.proposal else "")
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _without_memo(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """A pending line as JSON shows it: without the raw memo it was read from."""
    return {k: v for k, v in items if k != "memo"}


async def cmd_audit(args: argparse.Namespace) -> int:
    """Print a case's audit trail, or verify the log: chain, signatures, and Temporal's anchors.

    ``verify`` compares the log with what the engine recorded (each case's memo keeps
    the hash of its newest record and its record count) unless ``--no-temporal``:
    records removed from the end or an emptied log leave a valid chain, and only
    those anchors show them. Exit 1 names every case whose records are missing.
    """
    from temporalio.service import RPCError

    from baton.audit.anchors import list_anchors
    from baton.audit.keys import load_audit_keys
    from baton.audit.sink import AuditSink, open_sink

    log: AuditSink | None = None
    if args.dsn:
        from baton.audit.postgres import PostgresAuditLog

        log = PostgresAuditLog(args.dsn)
    elif args.target == "verify" or args.log:
        log = auditlog.AuditLog(args.file) if args.file else open_sink(_settings(args).audit_log)
    if args.target != "verify":
        if log is not None:
            records = list(log.read(case_id=args.target))
            log.close()
            if not records:
                raise BatonUsageError(f"no records of case {printable(args.target)!r} in {log.where}")
            events = [AuditEvent.model_validate(r["event"]) for r in records]
        else:
            events = await (await _client(args)).audit(args.target)
        if args.json:
            print(_dump(events))
            return 0
        for e in events:
            print(format_event(e))
        return 0

    assert log is not None
    anchors, after = None, list[str]()  # `after`: said on stderr once the verdict is out
    if not args.no_temporal:
        queue = _settings(args).task_queue
        try:
            found = await list_anchors((await _client(args)).temporal, task_queue=queue)
        except (BatonRuntimeError, RPCError) as exc:
            raise BatonRuntimeError(
                f"cannot read the cases' anchors from Temporal: {exc}; --no-temporal checks the chain alone"
            ) from None
        anchors = found.cases
        after.append(
            f"anchors: {len(found.cases)} case(s) on task queue {printable(queue)!r} "
            f"({found.unanchored} run(s) from before anchors, or not yet appended, skipped)"
        )
        if found.unreadable:
            after.append(f"baton: {len(found.unreadable)} case(s) not checked, their memo is encrypted: "
                         "set BATON_CODEC_KEYS")  # fmt: skip
    if isinstance(log, auditlog.AuditLog) and not log.path.exists() and not anchors:
        raise BatonUsageError(f"no audit log at {log.path}")
    keys, sink = load_audit_keys(), log
    verdict = await asyncio.to_thread(lambda: sink.verify(keys=keys, anchors=anchors))
    log.close()
    if args.json:
        print(json.dumps({"log": log.where, **dataclasses.asdict(verdict)}, indent=2))
    else:
        print(f"{log.where}: {printable(verdict)}", file=sys.stdout if verdict.ok else sys.stderr)
        for gap in verdict.missing:
            print(f"  missing: {printable(gap)}", file=sys.stderr)
        for note in verdict.notes:
            print(f"baton: note: {printable(note)}", file=sys.stderr)
        for line in after:
            print(line, file=sys.stderr)
    return 0 if verdict.ok else 1


def format_event(e: AuditEvent) -> str:
    """One line of ``baton audit``: actor and detail escaped, so neither can forge a line."""
    who = f" [{printable(e.actor)}]" if e.actor else ""
    return (
        f"{e.seq:>3} {e.at.isoformat(timespec='milliseconds')} {e.kind.value:<18}{who} {printable(e.detail)}"
    )


async def cmd_trace(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else _settings(args).home / "traces.jsonl"
    tree = traces.case_tree(path, args.case_id)
    if not tree:
        raise BatonUsageError(f"no spans of case {args.case_id!r} in {path}")
    print("\n".join(tree))
    return 0


async def cmd_worker(args: argparse.Namespace) -> int:
    from worker import run_worker

    app = _app(args, required=True)
    assert app is not None
    await run_worker(app)
    return 0


async def cmd_dev(args: argparse.Namespace) -> int:
    from baton.demo import offline_providers
    from baton.devserver import DevServer
    from baton.signing import create_dev_keys
    from worker import run_worker

    app = _app(args, required=True)
    assert app is not None
    settings = Settings.for_app(app)
    server = DevServer(
        Path(args.db) if args.db else settings.temporal_db,
        port=args.port,
        ui_port=args.ui_port,
        log_file=settings.home / "temporal.log",
        search_attributes=search.TYPE_NAMES_BY_NAME,
        ui_codec_endpoint=args.codec,
    )
    for item in args.dynamic_config_value:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BatonUsageError(f"--dynamic-config-value {item!r}: expected KEY=VALUE")
        server.dynamic_config[key.strip()] = value
    if args.codec and not (os.environ.get("BATON_CODEC_KEYS") or os.environ.get("BATON_CODEC_KEYS_FILE")):
        raise BatonUsageError(
            "--codec: set BATON_CODEC_KEYS (or _FILE) here and for `baton serve`: the worker encrypts "
            "with them and the gateway's codec endpoint decrypts with them"
        )
    await server.start()
    os.environ["TEMPORAL_ADDRESS"] = server.address  # this process's worker, and nothing else
    keys = create_dev_keys(settings.home)
    os.environ.setdefault("BATON_DECISION_KEYS_FILE", str(keys))  # this process's worker trusts it
    print(f"Development signing key: {keys} (the CLI signs decisions and submissions with it; "
          "BATON_REQUIRE_SIGNED_DECISIONS=1 makes the worker refuse unsigned ones)")  # fmt: skip
    print(f"Temporal dev server on {server.address} (db {server.db_file})")
    print(
        f"Web UI: http://localhost:{server.ui_port}    app {app.name!r} on task queue {settings.task_queue!r}"
    )
    if args.codec:
        print(f"Web UI codec endpoint: {args.codec}. In the UI (http://localhost:{server.ui_port}, not "
              "127.0.0.1): Codec Server icon → 'Use my browser setting' → the same URL → 'Include "
              "cross-origin credentials' → Apply; then sign in to `baton serve`.")  # fmt: skip
    try:
        async with offline_providers(app, settings) if not args.real_llm else _none() as providers:
            print("Ctrl-C stops both.", flush=True)  # a supervisor reading the pipe sees it now
            await run_worker(app, settings, providers=providers)
    finally:
        server.stop()
        print("stopped dev server and worker")
    return 0


async def cmd_serve(args: argparse.Namespace) -> int:
    """Run the approval gateway for the app until Ctrl-C."""
    app = _app(args, required=True)
    client = await _client(args, app=app)
    await _serve_gateway(client, args.host, args.port)
    return 0


async def _serve_gateway(client: BatonClient, host: str, port: int) -> None:
    from baton.gateway.serve import bind, server
    from baton.gateway.settings import GatewaySettings

    settings = GatewaySettings.from_env(
        os.environ, home=client.settings.home, default_url=f"http://localhost:{port}"
    )
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise BatonUsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if host not in ("127.0.0.1", "localhost", "::1") and settings.public_url.startswith("http://localhost"):
        print(f"baton: warning: listening on {host} with BATON_GATEWAY_URL={settings.public_url}: set "
              "BATON_GATEWAY_URL to the https address people use (and BATON_GATEWAY_SESSION_KEYS)",
              file=sys.stderr)  # fmt: skip
    keys = client.signing_keys
    logins = (
        f"OIDC ({settings.oidc.issuer})"
        if settings.oidc
        else f"local accounts in {client.settings.roles_file}"
    )
    print(f"Approval gateway on {settings.public_url} (listening on {host}:{port}); logins: {logins}")
    signer = (
        f"signed with key {keys.current!r}"
        if keys is not None and keys.can_sign
        else ("sent UNSIGNED (set BATON_DECISION_SIGNING_KEY; see README, Signed decisions)")
    )
    print(f"decisions and submissions are {signer}", flush=True)
    await server(client, settings).serve(sockets=[sock])


@contextlib.asynccontextmanager
async def _none() -> AsyncIterator[None]:
    yield None


async def cmd_demo(args: argparse.Namespace) -> int:
    from baton.demo import run_demo

    app = _app(args, required=True)
    assert app is not None
    ok = await run_demo(app, Settings.for_app(app), use_existing_server=args.no_server)
    return 0 if ok else 1


async def cmd_eval(args: argparse.Namespace) -> int:
    """Measure a process against its baselines on its labelled cases (see :mod:`baton.evals.runner`).

    Everything the command reads is checked before anything starts (the case file with its
    line numbers, the process, the arms, the fault kinds, ``--fail-if`` and ``--compare``),
    so a typo costs a second, not a half-run eval.
    """
    from baton.evals.cases import load_cases
    from baton.evals.inject import FAULTS, choose
    from baton.evals.progress import ProgressLine
    from baton.evals.records import ARMS, Arm
    from baton.evals.render import deltas_table, table
    from baton.evals.report import FIGURES, ArmFigures, Report, compare, fail_if
    from baton.evals.runner import RUNS_FILE, load_options, load_single, options_path, run_eval

    app = _app(args, required=True)
    assert app is not None
    cases = load_cases(args.cases)
    options = load_options(options_path(args.cases))
    single = load_single(args.single) if args.single else None
    arms: list[Arm] = []
    for name in (a.strip() for a in args.arms.split(",") if a.strip()):
        if name not in ARMS:
            raise BatonUsageError(f"--arms: unknown arm {name!r} (arms: {', '.join(ARMS)})")
        arms.append(name)
    kinds = [k.strip() for k in (args.inject_kinds or "").split(",") if k.strip()] or list(FAULTS)
    choose([c.id for c in cases], args.inject, kinds, args.seed)  # refuses a bad rate or kind now
    previous = Report.from_json(_read_text(args.compare), source=args.compare) if args.compare else None
    app.resolve_process(args.process)
    out = Path(args.out) if args.out else Settings.for_app(app).home / "eval" / args.process
    if args.fail_if:  # a bad expression fails now, on a report of the same shape with zero figures
        zero = ArmFigures.model_validate(dict.fromkeys(FIGURES, 0))
        fail_if(Report(process=args.process, generated_at=datetime.now(UTC), arms=dict.fromkeys(arms, zero),
                       labels={}, disagreements={}), args.fail_if)  # fmt: skip
    progress = ProgressLine()
    try:
        report, _ = await run_eval(
            app,
            args.process,
            cases,
            out_dir=out,
            arms=arms,
            inject_rate=args.inject,
            inject_kinds=kinds,
            seed=args.seed,
            concurrency=args.concurrency,
            single=single,
            options=options,
            use_existing_server=args.no_server,
            fake_llm=not args.real_llm,
            progress=progress,
        )
    except asyncio.CancelledError:
        progress.close()
        print(f"baton: interrupted; the partial report of what finished is in {out}", file=sys.stderr)
        raise
    progress.close()
    print(report.to_json() if args.json else table(report), end="" if args.json else "\n")
    if args.json:
        print()
    if previous is not None:
        print(deltas_table(compare(report, previous)), end="", file=sys.stderr if args.json else sys.stdout)
    print(f"runs: {out / RUNS_FILE}\nreport: {out / 'report.json'}, {out / 'report.html'}, "
          f"{out / 'chart.svg'}", file=sys.stderr)  # fmt: skip
    if args.fail_if and fail_if(report, args.fail_if):
        print(
            f"baton: --fail-if {args.fail_if!r} holds: {_figures_used(report, args.fail_if)}", file=sys.stderr
        )
        return 1
    return 0


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatonUsageError(f"{path}: cannot read: {exc}") from None


def _figures_used(report: Report, expression: str) -> str:
    """The figures a ``--fail-if`` expression names, with their values: why the gate closed."""
    from baton.evals.report import FIGURES

    found = []
    for arm, figures in report.arms.items():
        for figure in FIGURES:
            if re.search(rf"\barms\.{arm}\.{figure}\b", expression):
                found.append(f"arms.{arm}.{figure} = {getattr(figures, figure)}")
    governed = report.arms.get("governed")
    for figure in FIGURES:
        if governed is not None and re.search(rf"(?<![.\w]){figure}\b", expression):
            found.append(f"{figure} = {getattr(governed, figure)}")
    if re.search(r"(?<![.\w])disagreements\b", expression):
        found.append(f"disagreements = {len(report.disagreements)}")
    return ", ".join(found) or "(no figure named)"


async def cmd_seed(args: argparse.Namespace) -> int:
    from baton.app import AppContext

    app = _app(args, required=True)
    assert app is not None
    settings = Settings.for_app(app)
    context = AppContext(app=app, home=settings.home, roles_file=settings.roles_file)
    done = app.seed(context, reset=args.reset)
    print(done or f"app {app.name!r} declares no seed function: nothing to do")
    return 0


async def cmd_user_add(args: argparse.Namespace) -> int:
    """Add a local account to the roles file (the one the worker and ``baton serve`` read)."""
    from baton import accounts
    from baton.gateway.passwords import hash_password

    path = _settings(args).roles_file
    user_id = accounts.check_new_user(path, args.user)  # before asking for a password
    password_hash = hash_password(_new_password(args, user_id))
    accounts.add_user(path, user_id, name=args.name, roles=args.role, password_hash=password_hash)
    roles = ", ".join(dict.fromkeys(args.role))
    print(f"baton: user {user_id} added to {path} with roles {printable(roles)}")
    return 0


async def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Set a local account's password in the roles file."""
    from baton import accounts
    from baton.gateway.passwords import hash_password

    path = _settings(args).roles_file
    account = accounts.check_user(path, args.user)  # before asking for a password
    accounts.set_password(path, account.user_id, hash_password(_new_password(args, account.user_id)))
    print(f"baton: password set for {account.user_id} in {path}")
    return 0


def _new_password(args: argparse.Namespace, user_id: str) -> str:
    """The new password: one line of stdin (``--password-stdin``), else typed twice, unechoed.

    Never on the command line, where ``ps`` and shell history would show it.
    """
    from baton.gateway.passwords import check_new_password

    if args.password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        try:
            password = getpass.getpass(f"New password for {user_id}: ")
            if getpass.getpass("The same again: ") != password:
                raise BatonUsageError("the two passwords differ; nothing was changed")
        except EOFError:
            raise BatonUsageError("no password typed; nothing was changed") from None
    check_new_password(password)
    return password


async def cmd_init(args: argparse.Namespace) -> int:
    from baton.scaffold import write_app

    target = write_app(Path(args.directory or args.name), name=args.name)
    print(f"wrote app {args.name!r} in {target}; its README.md says what to do next:\n")
    print(f"  cd {target}\n  baton validate\n  pytest\n  baton dev")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(prog="baton", description="Governed multi-agent processes on Temporal.")
    parser.add_argument("--address", help="Temporal address (default: $TEMPORAL_ADDRESS or localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace (default: $TEMPORAL_NAMESPACE or default)")
    parser.add_argument(
        "--profile", help="Temporal config profile (TLS, API key; default: $TEMPORAL_PROFILE or 'default')"
    )
    parser.add_argument(
        "--app",
        help="the app (a directory, baton.toml or pyproject.toml; default: $BATON_APP, "
        "else found from the working directory upwards)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("init", cmd_init, "write a new app that works at once (specs, agents, tests)")
    p.add_argument("name", help="the app's name, e.g. invoices")
    p.add_argument("directory", nargs="?", help="where to write it (default: ./NAME)")
    dev = add("dev", cmd_dev, "run the embedded Temporal dev server and the app's worker until Ctrl-C")
    dev.add_argument("--port", type=int, default=7233, help="Temporal frontend port (default 7233)")
    dev.add_argument("--ui-port", type=int, default=8233, help="Web UI port (default 8233)")
    dev.add_argument("--db", help="dev server SQLite file (default: the app's home/temporal.db)")
    dev.add_argument(
        "--real-llm", action="store_true", help="call the real providers, not the app's scripted stand-in"
    )
    dev.add_argument(
        "--codec",
        nargs="?",
        const="http://localhost:8300/codec",
        metavar="URL",
        help="point the Web UI's codec endpoint at the gateway (default http://localhost:8300/codec), "
        "so encrypted cases read in the UI for whoever is signed in to `baton serve`",
    )
    dev.add_argument(
        "--dynamic-config-value",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server dynamic config over Baton's defaults (repeatable; README, 'Latency and the server')",
    )
    add("worker", cmd_worker, "run the app's worker against $TEMPORAL_ADDRESS")
    serve = add("serve", cmd_serve, "run the approval gateway (web inbox, case pages, logins) for the app")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8300, help="port to listen on (default 8300)")
    demo = add("demo", cmd_demo, "run the app's demo scenario on the embedded dev server")
    demo.add_argument("--no-server", action="store_true", help="use the server at $TEMPORAL_ADDRESS")
    ev = add("eval", cmd_eval, "measure a process against baselines on labelled cases (issue #16)")
    ev.add_argument("process", help="a process of the app, e.g. refund-request")
    ev.add_argument(
        "--cases", required=True, help="the labelled case set (JSONL); options in CASES.eval.yaml"
    )
    ev.add_argument(
        "--arms", default="governed,unchecked,single", help="comma-separated (default: all three)"
    )
    ev.add_argument(
        "--inject", type=float, default=0.0, metavar="RATE", help="share of cases to corrupt, 0..1"
    )
    ev.add_argument("--inject-kinds", help="comma-separated fault kinds (default: every built-in one)")
    ev.add_argument("--seed", type=int, default=0, help="which cases get which fault (default 0)")
    ev.add_argument("--concurrency", type=int, default=8, help="cases at once per arm (default 8)")
    ev.add_argument("--out", help="output folder (default: <home>/eval/<process>); a rerun resumes it")
    ev.add_argument("--single", metavar="FILE.yaml", help="the single arm's agent (step, provider, prompt)")
    ev.add_argument("--compare", metavar="previous.json", help="print what moved since that report")
    ev.add_argument("--fail-if", metavar="EXPR", help="exit 1 when this holds, e.g. 'wrong_actions > 0'")
    ev.add_argument("--no-server", action="store_true", help="use the server at $TEMPORAL_ADDRESS")
    ev.add_argument("--real-llm", action="store_true", help="call the real providers, not the stand-in")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    seed = add("seed", cmd_seed, "create the app's own data (its seed function)")
    seed.add_argument("--reset", action="store_true", help="drop and re-seed it")

    p = add("validate", cmd_validate, "check the app's specs (or one); prints ok or every problem")
    p.add_argument("process", nargs="?", help="a process of the app, or a spec file (default: all)")
    p.add_argument("--roles", help="roles directory YAML (default: the app's, or $BATON_ROLES_FILE)")
    p.add_argument("--json", action="store_true")
    p = add("diagram", cmd_diagram, "print a Mermaid flowchart of a process spec")
    p.add_argument("process", help="a process of the app, or a spec file")

    p = add("start", cmd_start, "start a case (validated before anything starts)")
    p.add_argument("process", help="a process of the app (e.g. refund-request) or a spec file")
    p.add_argument("--case", required=True, help="JSON or YAML file with the case input")
    p.add_argument("--id", help="case id (default: generated)")
    p.add_argument("--as", dest="user", default=os.environ.get("USER", "cli"), help="submitter")
    p.add_argument("--wait", action="store_true", help="wait for the outcome")
    p.add_argument("--json", action="store_true")

    p = add("status", cmd_status, "show a case's stage, path and what it waits for")
    p.add_argument("case_id")
    p.add_argument("--json", action="store_true")
    p = add("signing-key", cmd_signing_key, "print a new Ed25519 key pair for signed decisions")
    p.add_argument("--id", default="k1", help="key id (rotate by adding a new id first)")
    p = add("show", cmd_show, "show what a decision on a case decides: the case, each handoff, the checks")
    p.add_argument("case_id")
    p.add_argument("--json", action="store_true")
    p = add("audit", cmd_audit, "print a case's audit trail, or `audit verify [FILE]` to check the log")
    p.add_argument("target", help="a case id, or 'verify'")
    p.add_argument(
        "file",
        nargs="?",
        help="audit log file (default: the configured sink: $BATON_AUDIT_SINK, else $BATON_HOME/audit.jsonl)",
    )
    p.add_argument("--dsn", help="read the PostgreSQL audit sink at this libpq DSN instead of a file")
    p.add_argument("--log", action="store_true", help="read the case's events from the audit log")
    p.add_argument(
        "--no-temporal",
        action="store_true",
        help="verify: check the chain and signatures only, not against the anchors the cases recorded",
    )
    p.add_argument("--json", action="store_true")
    p = add("trace", cmd_trace, "print a case's span tree from the JSONL trace file")
    p.add_argument("case_id")
    p.add_argument("--file", help="trace file (default: $BATON_HOME/traces.jsonl)")

    for name, help_text in (
        ("approve", "approve a waiting case as USER"),
        ("reject", "reject a waiting case as USER"),
        ("request-changes", "send a waiting case's draft back with feedback, as USER"),
    ):
        p = add(name, cmd_decide, help_text + " (an update: a refusal is reported at once)")
        p.add_argument("case_id")
        p.add_argument("--as", dest="user", required=True)
        p.add_argument("--signal", action="store_true", help="send a signal (fire and forget) instead")
        p.add_argument("--decision-id", help="idempotency id: the same id applies once")
        p.add_argument(
            "--proposal", help="digest of what you reviewed (baton show prints it); refused if it has changed"
        )
        if name == "approve":
            p.add_argument("--comment", default="")
        elif name == "reject":
            p.add_argument("--reason", required=True)
        else:
            p.add_argument("--feedback", required=True)
    p = add("codec-server", cmd_codec_server, "serve /encode and /decode for the Temporal UI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--origin", action="append", default=["http://localhost:8233"], help="UI origin for CORS")
    p = add("fake-llm", cmd_fake_llm, "serve scripted /v1/chat/completions on loopback (tests, demos)")
    p.add_argument("--script", required=True, help="YAML script of replies per agent")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address")
    p.add_argument("--port", type=int, default=8099)
    p = add("pending", cmd_pending, "list cases waiting on people (the inbox)")
    p.add_argument("--role", help="only cases waiting on this role")
    p.add_argument("--json", action="store_true")

    about = "local accounts in the roles file, for `baton serve` ($BATON_ROLES_FILE, else the app's)"
    users = sub.add_parser("user", help=about, description=about)
    user_sub = users.add_subparsers(dest="action", required=True)
    for name, handler, help_text in (
        ("add", cmd_user_add, "add a user with their roles and a password"),
        ("passwd", cmd_user_passwd, "set a user's password"),
    ):
        p = user_sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("user", help="the user id, in canonical form (lower case, no spaces)")
        if name == "add":
            p.add_argument(
                "--role", action="append", required=True, help="a role the user holds (repeatable)"
            )
            p.add_argument("--name", default="", help="display name, e.g. 'Zoe Li'")
        p.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from one line of stdin, not a prompt",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        no_telemetry = ("validate", "diagram", "trace", "fake-llm", "seed", "init", "worker", "dev", "user")
        if args.command not in no_telemetry:
            telemetry.configure(_settings(args).home, service=f"baton-{args.command}")
        code = asyncio.run(args.handler(args))
    except SpecError as exc:
        for problem in exc.problems:
            print(f"baton: {exc.source}: {problem}", file=sys.stderr)
        code = 2
    except BatonUsageError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        code = 2
    except BatonRuntimeError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    # Skip interpreter finalisation: the Temporal client's Rust runtime threads can
    # abort the process while CPython tears down (temporalio/sdk-python#300), turning
    # a finished command into exit code -6. Everything is flushed first.
    telemetry.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
