"""The refund reference case in LangGraph, measured beside Baton's in the same run.

Why. The issue asks BENCHMARKS.md to report Baton's reference case beside
LangGraph's figure for the same pipeline, measured in the same run on the same
machine, rather than quoting a number from somebody else's hardware. This script
runs the pipeline in LangGraph with a durable SQLite checkpointer, then (unless
``--no-with-baton``) runs ``benchmarks/overhead.py`` for one round at the same sizes,
so both sets of figures come from one invocation.

LangGraph is not a dependency of Baton and must not become one, so the script has
two halves. The parent (the project's venv) installs ``langgraph``,
``langgraph-checkpoint-sqlite`` and ``aiosqlite`` into a throwaway venv (default
``/tmp/baton-langgraph-venv``, reused when it already has them), then runs this
same file with that venv's python and ``--child``. The child imports only the
standard library and LangGraph (never Baton or temporalio, which that venv lacks),
measures, and prints one JSON line that the parent turns into a table.

The pipeline mirrors refund-request: ``intake`` (order facts), ``drafter`` (a
proposal), ``policy`` (a verdict), then ``action`` (a reference): four nodes in
sequence, each an async function that returns at once, like Baton's benchmark
agents. It is compiled with ``AsyncSqliteSaver`` on a SQLite file in a temp dir and
invoked with the most durable mode the installed version offers (``durability="sync"``:
each checkpoint is written before the next step starts). Measured: serial latency
over N cases (own thread_id each), throughput of C concurrent cases, the child's CPU
per case during that burst, and checkpoints written per case.

Reading the gap. LangGraph runs in-process against a local SQLite file: a step is a
function call plus a local write. Baton's case goes through a networked durable
engine with a separate server (gRPC round trips, history events, task queues,
a worker process), so part of the difference is the price of that architecture, not
of governance; ``overhead.py`` separates the latter against a hand-written
Temporal workflow. Note also that ``overhead.py``'s dev server keeps its state in
an in-memory SQLite database (no ``--db-filename``), while LangGraph here writes a
file; that asymmetry favours Baton's figure.

Run: ``.venv/bin/python benchmarks/langgraph_compare.py [--serial 60] [--concurrent 200]``
(``--no-with-baton`` for LangGraph alone, ``--venv PATH`` for another throwaway venv)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = Path("/tmp/baton-langgraph-venv")
PACKAGES = ["langgraph", "langgraph-checkpoint-sqlite", "aiosqlite"]
PROBE = "import langgraph, langgraph.checkpoint.sqlite.aio, aiosqlite"
WARMUP = 5

CASE = {"order_id": "ORD-1001", "customer_id": "CUS-001", "requested_amount": 34.90, "reason": "defective"}
FACTS = {
    "order_id": "ORD-1001",
    "order_exists": True,
    "customer_id": "CUS-001",
    "customer_name": "Ana",
    "category": "apparel",
    "amount_paid": 34.90,
    "refundable_amount": 34.90,
}
PROPOSAL = {
    "order_id": "ORD-1001",
    "amount": 34.90,
    "reason_code": "defective",
    "message": "Hello Ana, we refund 34.90 today.",
}
VERDICT = {"compliant": True, "max_allowed": 34.90}
RESULT = {"reference": "RF-0", "applied_now": True}


class RefundState(TypedDict, total=False):
    """The graph's state: the case, then what each node adds (same payloads as overhead.py's agents)."""

    case: dict[str, Any]
    facts: dict[str, Any]
    proposal: dict[str, Any]
    verdict: dict[str, Any]
    result: dict[str, Any]


# The nodes do no work, like Baton's benchmark agents: what is measured is the engine.


async def intake(state: RefundState) -> RefundState:
    return {"facts": FACTS}


async def drafter(state: RefundState) -> RefundState:
    return {"proposal": PROPOSAL}


async def policy(state: RefundState) -> RefundState:
    return {"verdict": VERDICT}


async def action(state: RefundState) -> RefundState:
    return {"result": RESULT}


def percentile(ordered: list[float], share: float) -> float:
    """The same nearest-rank percentile as overhead.py, so the columns compare."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def child(serial: int, concurrent: int) -> dict[str, Any]:
    """The LangGraph half (runs in the throwaway venv): measure and return the figures."""
    import inspect
    from importlib.metadata import version

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # type: ignore[import-not-found]
    from langgraph.graph import END, START, StateGraph  # type: ignore[import-not-found]

    builder = StateGraph(RefundState)
    for name, node in (("intake", intake), ("drafter", drafter), ("policy", policy), ("action", action)):
        builder.add_node(name, node)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "drafter")
    builder.add_edge("drafter", "policy")
    builder.add_edge("policy", "action")
    builder.add_edge("action", END)

    with tempfile.TemporaryDirectory(prefix="baton-langgraph-") as tmp:
        async with AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "checkpoints.sqlite")) as saver:
            graph = builder.compile(checkpointer=saver)
            # ``durability`` arrived in langgraph 0.6; "sync" persists each checkpoint before the
            # next step starts (the default, "async", writes it while the next step runs).
            if "durability" in inspect.signature(graph.ainvoke).parameters:
                durability, extra = "sync", {"durability": "sync"}
            else:
                durability, extra = "default (this langgraph predates durability=)", {}

            async def run_one() -> str:
                thread_id = str(uuid.uuid4())
                state = await graph.ainvoke(
                    {"case": CASE}, {"configurable": {"thread_id": thread_id}}, **extra
                )
                assert state["result"]["reference"] == "RF-0", state
                return thread_id

            for _ in range(WARMUP):  # imports, the connection, the tables, caches
                await run_one()
            latencies = []
            for _ in range(serial):
                started = time.perf_counter()
                await run_one()
                latencies.append((time.perf_counter() - started) * 1000)
            usage0 = resource.getrusage(resource.RUSAGE_SELF)  # all threads, aiosqlite's included
            started = time.perf_counter()
            ids = await asyncio.gather(*(run_one() for _ in range(concurrent)))
            wall = time.perf_counter() - started
            usage1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)

            async def rows(table: str, thread_ids: list[str]) -> float:
                counts: list[int] = []
                for thread_id in thread_ids:
                    query = f"SELECT COUNT(*) FROM {table} WHERE thread_id = ?"
                    async with saver.conn.execute(query, (thread_id,)) as cursor:
                        counts.append(int((await cursor.fetchone())[0]))
                return sum(counts) / len(counts)

            async def pragma(name: str) -> str:
                async with saver.conn.execute(f"PRAGMA {name}") as cursor:
                    return str((await cursor.fetchone())[0])

            sample = list(ids[:10])
            ordered = sorted(latencies)
            return {
                "python": platform.python_version(),
                "langgraph": version("langgraph"),
                "langgraph_checkpoint_sqlite": version("langgraph-checkpoint-sqlite"),
                "durability": durability,
                "journal_mode": await pragma("journal_mode"),
                "synchronous": await pragma("synchronous"),
                "p50_ms": statistics.median(ordered),
                "p95_ms": percentile(ordered, 0.95),
                "throughput": concurrent / wall,
                "wall_s": wall,
                "cpu_ms": cpu * 1000 / concurrent,
                "checkpoints": await rows("checkpoints", sample),
                "writes": await rows("writes", sample),
            }


def venv_python(venv: Path) -> Path:
    """The throwaway venv's python, created (and given LangGraph) only when it lacks it."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", PROBE], capture_output=True).returncode == 0:
        return python
    if not python.exists():
        print(f"creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(PACKAGES)} into {venv}", file=sys.stderr)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES], check=True
    )
    return python


def measure_langgraph(venv: Path, serial: int, concurrent: int) -> dict[str, Any]:
    """Run this file as the child under the throwaway venv; its last stdout line is the JSON."""
    command = [
        str(venv_python(venv)),
        __file__,
        "--child",
        "--serial",
        str(serial),
        "--concurrent",
        str(concurrent),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"LangGraph child failed (exit {done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def report(figures: dict[str, Any], concurrent: int) -> str:
    """The LangGraph row (the same columns BENCHMARKS.md uses for Baton) and what it ran on."""
    f = figures
    return "\n".join(
        [
            f"| engine | serial p50 ms | serial p95 ms | cases/s ({concurrent} concurrent) | CPU ms/case"
            " | durable writes/case |",
            "|---|---:|---:|---:|---:|---:|",
            f"| LangGraph {f['langgraph']} (AsyncSqliteSaver, SQLite file, durability={f['durability']})"
            f" | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} | {f['throughput']:.1f} | {f['cpu_ms']:.2f}"
            f" | {f['checkpoints']:.0f} checkpoints |",
            "",
            f"python {f['python']}, langgraph {f['langgraph']},"
            f" langgraph-checkpoint-sqlite {f['langgraph_checkpoint_sqlite']};"
            f" durability={f['durability']}; SQLite journal_mode={f['journal_mode']},"
            f" synchronous={f['synchronous']} (0 off, 1 normal, 2 full, 3 extra);"
            f" also {f['writes']:.0f} rows/case in the writes table; burst wall {f['wall_s']:.2f} s.",
            "CPU ms/case is the whole LangGraph process (it is engine, store and caller at once).",
        ]
    )


def run_baton(serial: int, concurrent: int) -> str:
    """Baton's figures at the same sizes, from overhead.py in a subprocess (one round)."""
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "overhead.py"),
        "--serial",
        str(serial),
        "--concurrent",
        str(concurrent),
        "--rounds",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"overhead.py failed (exit {done.returncode}):\n{done.stderr}")
    return done.stdout.rstrip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serial", type=int, default=60, help="cases run one after another")
    parser.add_argument("--concurrent", type=int, default=200, help="cases started at once")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the throwaway venv for LangGraph")
    parser.add_argument(
        "--with-baton",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run overhead.py (one round, same sizes) after LangGraph",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(asyncio.run(child(options.serial, options.concurrent))))
        return
    figures = measure_langgraph(options.venv, options.serial, options.concurrent)
    print(report(figures, options.concurrent))
    if options.with_baton:
        print(
            f"\nBaton, same run: benchmarks/overhead.py --serial {options.serial}"
            f" --concurrent {options.concurrent} --rounds 1\n"
        )
        print(run_baton(options.serial, options.concurrent))
    else:
        print("\nCompare with Baton's figures: .venv/bin/python benchmarks/overhead.py")


if __name__ == "__main__":
    main()
