"""Property-based: whatever a user feeds the spec loader, the rules or the case input,
the answer is a clear error of Baton's own (or success), never a crash."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.client import MAX_CASE_BYTES, prepare_case
from baton.errors import BatonUsageError, CaseInputError, SpecError
from baton.rules import RuleError, compile_expr, evaluate_bool
from baton.settings import Settings
from baton.spec import ProcessSpec, load_spec, load_spec_text
from tests.conftest import refund_spec

REFERENCE_TEXT = refund_spec().read_text()
SPEC = load_spec(refund_spec())
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _loads_or_spec_error(text: str) -> None:
    try:
        result = load_spec_text(text, source="fuzz.yaml")
    except SpecError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(result, ProcessSpec)


@FAST
@given(st.text(max_size=400))
def test_any_text_is_a_spec_or_a_spec_error(text: str) -> None:
    _loads_or_spec_error(text)


@FAST
@given(st.dictionaries(st.sampled_from(["process", "version", "input", "agents", "flow", "decide",
                                        "ladders", "action", "escalation", "on_timeout", "inbox"]), JSON))  # fmt: skip
def test_any_structure_is_a_spec_or_a_spec_error(data: dict[str, Any]) -> None:
    import yaml

    _loads_or_spec_error(yaml.safe_dump(data))


@FAST
@given(st.data())
def test_mutated_reference_spec_is_a_spec_or_a_spec_error(data: st.DataObject) -> None:
    lines = REFERENCE_TEXT.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    action = data.draw(st.sampled_from(["drop", "replace", "duplicate"]))
    if action == "drop":
        del lines[index]
    elif action == "duplicate":
        lines.insert(index, lines[index])
    else:
        lines[index] = data.draw(st.text(max_size=40))
    _loads_or_spec_error("\n".join(lines))


@FAST
@given(st.text(max_size=60), st.dictionaries(st.sampled_from(["case", "intake", "x"]), JSON, max_size=3))
def test_any_rule_compiles_or_fails_with_a_rule_error(expr: str, context: dict[str, Any]) -> None:
    try:
        compile_expr(expr)
        result = evaluate_bool(expr, context)
    except RuleError as exc:
        assert str(exc)
    else:
        assert isinstance(result, bool)


@FAST
@given(JSON)
def test_any_case_input_is_accepted_or_refused_naming_fields(case: Any) -> None:
    try:
        checked = prepare_case(SPEC, case)
    except CaseInputError as exc:
        assert exc.problems
        assert all(":" in p for p in exc.problems)
    else:
        assert set(checked) >= {"order_id", "customer_id", "requested_amount", "reason"}


def test_an_oversized_case_is_refused_before_start() -> None:
    case = {"order_id": "ORD-1001", "customer_id": "CUS-001", "requested_amount": 5, "reason": "other",
            "note": "x" * 1999}  # fmt: skip
    assert prepare_case(SPEC, case)
    with pytest.raises(CaseInputError, match=f"at most {MAX_CASE_BYTES} bytes"):
        prepare_case(SPEC, {**case, "note": "y" * 1500, "order_id": "ORD-" + "1" * (MAX_CASE_BYTES + 10)})


def test_unknown_workflow_sandbox_mode_is_named() -> None:
    with pytest.raises(
        BatonUsageError, match=r"BATON_WORKFLOW_SANDBOX='maybe': expected off, shared, strict"
    ):
        _ = Settings(sandbox_choice="maybe").workflow_sandbox
    assert Settings(sandbox_choice=" Strict ").workflow_sandbox == "strict"
