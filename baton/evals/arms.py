"""The baseline arms of ``baton eval``: a governed spec rewritten as what a team would run without it.

Each arm is a pure function of a validated :class:`~baton.spec.models.ProcessSpec` that
returns another one, checked by the same loader ``baton validate`` uses, so a worker runs
it unchanged (``GovernedProcess`` interprets it like any spec) and the comparison measures
the governance the spec declares, not a different engine:

- ``governed``: the spec as written.
- ``unchecked`` (:func:`unchecked`): the chain of the same producing agents in flow order,
  nothing between them and the action.
- ``single`` (:func:`single_agent`): one LLM agent for the whole task, its answer acted on.

What stays in every arm is each agent's **contract check**: the engine validates every
handoff against its agent's output model (it cannot hand an untyped value on), re-runs the
agent with the problems as feedback up to the step's ``check_attempts``, and, as these arms
have no escalation ladder, rejects the case (the safe default) when it still fails. A
contract is the agent's typed output, not a governance decision.

What a runner calls is :func:`arm_spec`. Misuse (an arm needing a :class:`SingleAgent`
without one, a step the spec lacks) raises :class:`~baton.errors.BatonUsageError`; a
rewritten spec that does not validate raises :class:`~baton.errors.SpecError`.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from baton.errors import BatonUsageError
from baton.evals.records import Arm
from baton.spec import load_spec_text
from baton.spec.models import IDENTIFIER, AgentSpec, GroupSpec, ProcessSpec, StepSpec
from baton.wiring import Wiring

UNCHECKED_SUFFIX = "--unchecked"
SINGLE_SUFFIX = "--single"
ACT_ALWAYS = {"then": "auto", "reason": "baseline arm: every case is acted on as its agents propose"}
"""The one decision rule of both baselines: no rule, no ladder, the action taken directly."""


class SingleAgent(BaseModel):
    """The one LLM agent of the ``single`` arm, as an eval file declares it.

    It takes the place of ``step``, the step whose handoff the action reads (``drafter``
    for refunds, ``proposer`` for access requests), so the same action acts on its answer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str = Field(pattern=IDENTIFIER, description="The step the agent replaces: the action reads it.")
    agent: str = Field(
        default="single",
        pattern=IDENTIFIER,
        description="The agent's own name (what the system message and a scripted fake LLM know it by); "
        "its step keeps the replaced step's name.",
    )
    provider: str = Field(min_length=1, description="A provider of the providers file.")
    model: str | None = Field(default=None, description="Default: the provider's.")
    prompt: str = Field(
        min_length=1,
        description="Prompt template file relative to the app's root; $case, $feedback and, with "
        "retrieval, the first step's name are filled in.",
    )
    output: str | None = Field(
        default=None, description="Its contract, 'module:Class'; default: the replaced step's contract."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    retrieval: bool = Field(
        default=True,
        description="Run the spec's first step, unguarded, before the agent: its lookup stands in for "
        "the tool call a single agent would make; false: the agent sees only the case.",
    )


def arm_spec(
    spec: ProcessSpec,
    arm: Arm,
    single: SingleAgent | None = None,
    *,
    base_dir: Path | None = None,
    wiring: Wiring | None = None,
) -> ProcessSpec:
    """The spec ``arm`` runs: the governed spec itself, or one of its baselines.

    Args:
        spec: the governed process, already validated.
        arm: ``governed``, ``unchecked`` or ``single``.
        single: the single arm's agent (required for ``single``).
        base_dir: what ``single.prompt`` is relative to (the app's root; default: the cwd).
        wiring: when given, the rewritten spec is also checked against the deployment
            (activities, providers), as ``baton start`` would.

    Raises:
        BatonUsageError: ``single`` without a :class:`SingleAgent`, or one that does not fit.
        SpecError: the rewritten spec does not validate.
    """
    if arm == "governed":
        return spec
    if arm == "unchecked":
        return unchecked(spec, wiring=wiring)
    if single is None:
        raise BatonUsageError(
            f"the single arm of {spec.process!r} needs a single agent (provider, prompt, step)"
        )
    return single_agent(spec, single, base_dir=base_dir or Path.cwd(), wiring=wiring)


def unchecked(spec: ProcessSpec, *, wiring: Wiring | None = None) -> ProcessSpec:
    """The same agents in the same order with guards, reviews, routing and decision rules off.

    "The same agents" are the agents that produce the work: every step that is not a
    review runs, in flow order, with its guards and ``when`` removed (every step runs).
    A reviewer (a step with ``reviews``, or a member of a group that ``reviews``) is
    dropped: with reviews off its verdict gates nothing, and running it would only add
    its cost to the arm. It stays, as a plain step whose verdict gates nothing, when a
    later step may read its handoff (the step ``sees`` it, its prompt names it, or it is
    a Python agent shown everything earlier), since that step's input would change
    otherwise. A group that does not review runs its members one after another.

    The one decision rule is ``auto``; there are no ladders, no escalation, no token
    budget and no inbox, so no case ever waits on a person. A handoff that never meets
    its contract ends the case ``rejected`` (the safe default). The action must read
    only the producers' handoffs (both example apps' actions read the drafter's or the
    proposer's): an action reading a reviewer's verdict is gated by it, which this arm
    removes by definition.

    Raises:
        SpecError: the rewritten spec does not validate (a kept step's prompt reads a
            reviewing group's resolution, say).
    """
    sequence = _in_sequence(spec)
    needed: set[str] = set()
    kept: list[StepSpec] = []
    for step, reviewer in reversed(sequence):  # decided before any earlier step adds its reads
        if not reviewer or step.step in needed:
            kept.insert(0, step)
            needed |= _reads(spec, step)
    data = _head(spec, UNCHECKED_SUFFIX)
    data["description"] = (
        f"Baseline for baton eval: {spec.process} as an unchecked chain (the same agents in flow "
        "order; no guards, reviews, routing or decision rules; every case acted on)."
    )
    data["agents"] = {s.agent_name: _agent(spec.agents[s.agent_name]) for s in kept}
    data["flow"] = [_plain(s, {k.step for k in kept}) for s in kept]
    data["decide"] = [ACT_ALWAYS]
    return _validated(data, spec.process + UNCHECKED_SUFFIX, base_dir=None, wiring=wiring)


def single_agent(
    spec: ProcessSpec, agent: SingleAgent, *, base_dir: Path, wiring: Wiring | None = None
) -> ProcessSpec:
    """One LLM agent for the whole task, its answer acted on as is by the spec's action.

    A single agent in practice is a model with a lookup tool; Baton's LLM agents have no
    tools, so with ``agent.retrieval`` (the default) the spec's first step runs first,
    unguarded, as that lookup: it retrieves data and decides nothing, the agent sees its
    handoff, and a fault injected at the first handoff reaches this arm as it reaches the
    others. Without retrieval the agent sees only the case.

    The agent's step is named after the step it replaces, so the action finds its answer
    where it reads the governed drafter's; the agent has its own name (``agent.agent``,
    ``single`` by default), so a scripted fake LLM answers it apart from the governed
    agent it replaces. The action must read no other handoff: it sees only this agent's
    and the retrieval's.

    Raises:
        BatonUsageError: ``agent.step`` is not a step of ``spec``, or retrieval is asked for
            but the flow does not start with a plain step (or its agent has ``agent.agent``'s name).
        SpecError: the rewritten spec does not validate (a prompt that cannot be read or
            names a step this arm lacks, a provider the deployment lacks).
    """
    steps = {s.step: s for s in spec.steps()}
    replaced = steps.get(agent.step)
    if replaced is None:
        raise BatonUsageError(
            f"single agent: {spec.process!r} has no step {agent.step!r} (its steps: {', '.join(steps)})"
        )
    data = _head(spec, SINGLE_SUFFIX)
    data["description"] = (
        f"Baseline for baton eval: {spec.process} as one LLM agent ({agent.provider}"
        f"{'/' + agent.model if agent.model else ''}) whose answer is acted on as is."
    )
    data["agents"], data["flow"] = {}, []
    first = spec.flow[0]
    if agent.retrieval and first.step != agent.step:
        if isinstance(first, GroupSpec) or first.reviews is not None:
            raise BatonUsageError(
                f"single agent: {spec.process!r} does not start with a plain step to retrieve with; "
                "set retrieval: false"
            )
        if first.agent_name == agent.agent:
            raise BatonUsageError(f"single agent: agent {agent.agent!r} is also the first step's agent")
        data["agents"][first.agent_name] = _agent(spec.agents[first.agent_name])
        data["flow"].append(_plain(first, set()))
    data["agents"][agent.agent] = {
        "kind": "llm",
        "description": "One LLM agent for the whole task (baton eval's single arm).",
        "prompt": agent.prompt,
        "provider": agent.provider,
        "model": agent.model,
        "temperature": agent.temperature,
        "max_tokens": agent.max_tokens,
        "output": agent.output or spec.agents[replaced.agent_name].output,
        "timeouts": {"start_to_close": "120s", "heartbeat": "10s"},
        "retry": {"max_attempts": 5, "initial_interval": "1s", "max_interval": "30s"},
    }
    data["flow"].append({"step": agent.step, "agent": agent.agent, "check_attempts": replaced.check_attempts})
    data["decide"] = [ACT_ALWAYS]
    return _validated(data, spec.process + SINGLE_SUFFIX, base_dir=base_dir, wiring=wiring)


def _in_sequence(spec: ProcessSpec) -> list[tuple[StepSpec, bool]]:
    """Every step in flow order (a group's members one after another), each marked if it reviews."""
    found: list[tuple[StepSpec, bool]] = []
    for item in spec.flow:
        if isinstance(item, GroupSpec):
            found += [(member, item.reviews is not None) for member in item.parallel]
        else:
            found.append((item, item.reviews is not None))
    return found


def _reads(spec: ProcessSpec, step: StepSpec) -> set[str]:
    """The earlier names ``step``'s agent may read: what it sees, or what its prompt names."""
    agent = spec.agents[step.agent_name]
    shown = set(spec.names()) if step.sees is None else set(step.sees)
    if agent.prompt_text is None:
        return shown  # a Python agent's code may read any handoff it is shown
    return shown & set(string.Template(agent.prompt_text).get_identifiers())


def _plain(step: StepSpec, kept: set[str]) -> dict[str, Any]:
    """``step`` with nothing that gates: no guards, no routing, no review; ``sees`` cut to ``kept``."""
    plain: dict[str, Any] = {"step": step.step, "check_attempts": step.check_attempts}
    if step.agent is not None:
        plain["agent"] = step.agent
    if step.sees is not None:
        plain["sees"] = [name for name in step.sees if name == "case" or name in kept]
    return plain


def _agent(agent: AgentSpec) -> dict[str, Any]:
    """An agent as spec data; an LLM agent keeps its frozen prompt text, not its file path
    (the path is relative to the governed spec's folder, which the rewritten spec lacks)."""
    return agent.model_dump(mode="json", exclude={"prompt"})


def _head(spec: ProcessSpec, suffix: str) -> dict[str, Any]:
    """What every arm keeps of ``spec``: its input, action, version and history bound."""
    return {
        "process": spec.process + suffix,
        "version": spec.version,
        "input": spec.input,
        "continue_as_new_after": spec.continue_as_new_after,
        "action": None if spec.action is None else spec.action.model_dump(mode="json"),
    }


def _validated(
    data: dict[str, Any], source: str, *, base_dir: Path | None, wiring: Wiring | None
) -> ProcessSpec:
    """Check ``data`` with the loader ``baton validate`` uses (shape, names, CEL, contracts, prompts)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if wiring is None:
        return load_spec_text(text, source=source, base_dir=base_dir)
    return load_spec_text(
        text,
        source=source,
        base_dir=base_dir,
        roles=wiring.roles,
        activities=wiring.activities,
        providers=wiring.providers,
    )
