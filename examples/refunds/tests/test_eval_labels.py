"""The eval set's labels hold on the real engine: a stratified sample, every tag at least twice.

``eval/check_labels.py`` runs all of them (about half a minute); this keeps the app's tests
quick while still catching a generator or policy change that breaks a kind of case.
"""

from __future__ import annotations

import sys
from pathlib import Path

from baton.evals.cases import EvalCase, load_cases
from baton.testing import AppHarness

EVAL = Path(__file__).resolve().parents[1] / "eval"
sys.path.insert(0, str(EVAL))

from check_labels import check_cases  # noqa: E402 (beside the case set, not a package)

PER_TAG = 2


def sample(cases: list[EvalCase]) -> list[EvalCase]:
    """The first ``PER_TAG`` cases of every tag, with the cases they come ``after``, in file order."""
    by_id = {case.id: case for case in cases}
    chosen: set[str] = set()
    seen: dict[str, int] = {}
    for case in cases:
        if any(seen.get(tag, 0) < PER_TAG for tag in case.tags):
            for tag in case.tags:
                seen[tag] = seen.get(tag, 0) + 1
            current: EvalCase | None = case
            while current is not None and current.id not in chosen:
                chosen.add(current.id)
                current = by_id[current.after] if current.after else None
    return [case for case in cases if case.id in chosen]


async def test_a_sample_of_the_eval_set_matches_its_labels(baton_harness: AppHarness) -> None:
    cases = sample(load_cases(EVAL / "cases.jsonl"))
    assert len(cases) >= 20
    checks = await check_cases(baton_harness, "refund-request", "drafter", cases)
    assert all(c.ok for c in checks), "\n".join(c.line() for c in checks if not c.ok)
