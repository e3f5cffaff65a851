"""The scripted fake LLM's ``template`` replies: one script answers every case from what the prompt shows."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from activities.llm import render_prompt
from baton.errors import BatonUsageError
from baton.fakellm import FakeLlmServer, FakeReply, FakeScript, TemplateError, fill_template
from baton.messages import AgentInput

CASE = {"order_id": "ORD-1015", "customer_id": "CUS-011", "requested_amount": 42.5, "reason": "defective"}
INTAKE = {"order_exists": True, "customer_name": "Kai", "refundable_amount": 42.5, "order": {"lines": 2}}
PROMPT = "Refund what is due.\n\nCase: $case\n\nIntake:\n$intake\n\nFeedback:\n$feedback\n"
TEMPLATE = {
    "order_id": "{case.order_id}",
    "amount": "{case.requested_amount}",
    "exists": "{handoffs.intake.order_exists}",
    "lines": "{handoffs.intake.order.lines}",
    "message": "Hello {handoffs.intake.customer_name}, {case.requested_amount} for {case.order_id}.",
    "cites": ["{case.reason}", "kept {as is}"],
}


def prompt(template: str = PROMPT) -> str:
    """``template`` as Baton's LLM agent renders it: the case and the intake handoff as JSON."""
    agent = AgentInput(
        case_id="c", process="p", step="drafter", agent="single", case=CASE, handoffs={"intake": INTAKE}
    )
    return render_prompt(template, agent)


def test_a_template_fills_from_the_labelled_json_keeping_types() -> None:
    filled = fill_template(TEMPLATE, prompt())
    assert filled == {
        "order_id": "ORD-1015",
        "amount": 42.5,  # a whole-string placeholder keeps the value's JSON type
        "exists": True,
        "lines": 2,  # a dotted path into a nested object of a handoff
        "message": "Hello Kai, 42.5 for ORD-1015.",
        "cites": ["defective", "kept {as is}"],  # not a dotted path: left alone
    }


def test_a_placeholder_that_cannot_be_filled_is_named() -> None:
    with pytest.raises(TemplateError, match=r"\{case\.nope\}: the case JSON has no 'nope'"):
        fill_template({"x": "{case.nope}"}, prompt())
    with pytest.raises(TemplateError, match="no line starting 'Risk'"):
        fill_template({"x": "{handoffs.risk.level}"}, prompt())
    with pytest.raises(TemplateError, match="no line starting 'Case'"):
        fill_template({"x": "{case.order_id}"}, prompt("The request:\n$case\n"))  # unlabelled: not guessed


def test_a_template_with_an_unknown_root_is_refused_when_the_script_loads(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{order\.id\}"):
        FakeReply.model_validate({"template": {"x": "{order.id}"}})
    script = tmp_path / "fake.yaml"
    script.write_text("agents:\n  single:\n    - template: {x: '{handoffs.intake}'}\n")
    with pytest.raises(BatonUsageError, match="unknown placeholder"):
        FakeScript.load(script)


async def test_the_server_answers_a_template_per_request_and_fails_loudly() -> None:
    script = FakeScript.model_validate(
        {
            "agents": {
                "single": [{"template": TEMPLATE, "usage": {"prompt_tokens": 900, "completion_tokens": 70}}],
                "broken": [{"template": {"x": "{case.nope}"}}],
            }
        }
    )

    def body(agent: str, case: dict[str, Any]) -> dict[str, Any]:
        rendered = render_prompt(
            PROMPT,
            AgentInput(
                case_id="c", process="p", step="s", agent=agent, case=case, handoffs={"intake": INTAKE}
            ),
        )
        system = f"You are the '{agent}' agent in the 'p' process."
        return {
            "model": "m",
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": rendered}],
        }

    async with FakeLlmServer(script) as fake, httpx.AsyncClient(base_url=fake.base_url) as http:
        answers = []
        for order in ("ORD-1001", "ORD-1002"):  # the one scripted reply repeats, filled per case
            reply = await http.post("/chat/completions", json=body("single", {**CASE, "order_id": order}))
            assert reply.status_code == 200
            answers.append(reply.json())
        broken = await http.post("/chat/completions", json=body("broken", CASE))
    contents = [json.loads(a["choices"][0]["message"]["content"]) for a in answers]
    assert [c["order_id"] for c in contents] == ["ORD-1001", "ORD-1002"]
    assert contents[0]["amount"] == 42.5
    assert answers[0]["usage"] == {"prompt_tokens": 900, "completion_tokens": 70, "total_tokens": 970}
    assert broken.status_code == 500
    assert "fake-llm template for agent 'broken'" in broken.json()["error"]["message"]
    assert "{case.nope}" in broken.json()["error"]["message"]
