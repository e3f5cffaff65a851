"""Load a process spec from YAML and report every problem with its location.

A spec is governance: a typo must stop deployment, and the author should fix
every problem in one pass. So the loader never stops at the first error; it
collects YAML, shape and cross-reference problems and names each by path and
line (``flow[2].agent (line 31): unknown agent 'polcy'``).

A spec is also input from outside, so the loader bounds what it reads: at most
:data:`MAX_SPEC_BYTES`, nesting at most :data:`MAX_DEPTH` deep, no YAML aliases
(a few hundred bytes of aliases expand to billions of nodes), and prompt files
only from the spec's own folder (or below it), each at most :data:`MAX_PROMPT_BYTES`.
"""

from __future__ import annotations

import difflib
import enum
import re
import string
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from baton.contracts import ContractError, format_location, resolve_contract
from baton.errors import SpecError
from baton.rules import MAX_NESTING, RuleError, nesting, referenced_names
from baton.spec.models import GroupSpec, MemberSpec, ProcessSpec, SpecSnapshot, StepSpec, item_names

Loc = tuple[str | int, ...]

_MACRO_VAR = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
_CEL_BUILTINS = {"true", "false", "null"}

MAX_SPEC_BYTES = 1 << 20
"""The largest spec file read (1 MiB); real specs are a few KiB."""
MAX_PROMPT_BYTES = 64 << 10
"""The largest prompt file frozen into a spec (64 KiB)."""
MAX_DEPTH = 32
"""The deepest nesting of YAML collections in a spec (real specs nest about 5 deep)."""
MAX_NODES = 20_000
"""The most YAML values (scalars, lists, mappings) in a spec (the examples hold about 300)."""


RESERVED_NAMES = {
    "case": "the case input",
    "overruled": "true in decision rules once a person overruled a reviewer",
}
"""Names rules read that no step may take."""

Roles = Mapping[str, int] | Iterable[str]
"""Known roles: a mapping of role → member count, or just the role names."""


def _role_sizes(roles: Roles | None) -> dict[str, int] | None:
    if roles is None:
        return None
    if isinstance(roles, Mapping):
        return dict(roles)
    return {role: 10**6 for role in roles}  # sizes unknown: only names are checked


def load_spec(
    path: str | Path,
    *,
    roles: Roles | None = None,
    activities: Iterable[str] | None = None,
    providers: Iterable[str] | None = None,
) -> ProcessSpec:
    """Read and fully validate the spec at ``path``.

    Args:
        path: YAML file.
        roles: roles known to the directory (with member counts, when known);
            when given, rungs naming any other role, or needing more approvers
            than the role has, are problems.
        activities: activity names the app's worker serves; when given, an agent
            or action naming any other is a problem (a typo must fail here, not
            escalate a case to people at run time).
        providers: LLM provider names in the providers file; when given, an llm
            agent naming any other is a problem.

    Raises:
        SpecError: listing every problem found.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as stream:
            raw = stream.read(MAX_SPEC_BYTES + 1)  # never more, whatever the file is
    except OSError as exc:
        raise SpecError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(source, [_too_large()])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(source, [f"cannot read: not UTF-8 text (byte {exc.start})"]) from None
    return load_spec_text(
        text,
        source=source,
        roles=roles,
        base_dir=Path(path).parent,
        activities=activities,
        providers=providers,
    )


def load_spec_text(
    text: str,
    *,
    source: str = "<spec>",
    roles: Roles | None = None,
    base_dir: Path | None = None,
    activities: Iterable[str] | None = None,
    providers: Iterable[str] | None = None,
) -> ProcessSpec:
    """Validate spec ``text``; see :func:`load_spec`. Prompt files resolve from ``base_dir``."""
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError(source, [_too_large()])
    data, lines = _parse(text, source)
    if not isinstance(data, dict):
        raise SpecError(source, ["(document): a spec must be a YAML mapping"])
    missing = _read_prompts(data, base_dir or Path.cwd())
    if missing:
        raise SpecError(source, [_where(loc, lines) + f": {msg}" for loc, msg in missing])
    try:
        spec = ProcessSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_where(_clean_loc(e["loc"]), lines) + f": {e['msg']}" for e in exc.errors()]
        raise SpecError(source, problems) from None
    found = cross_reference_problems(spec, roles=_role_sizes(roles))
    found += wiring_problems(
        spec,
        activities=None if activities is None else set(activities),
        providers=None if providers is None else set(providers),
    )
    if found:
        raise SpecError(source, [_where(loc, lines) + f": {msg}" for loc, msg in found])
    return spec


def _read_prompts(data: dict[str, Any], base_dir: Path) -> list[tuple[Loc, str]]:
    """Freeze each llm agent's prompt file into the spec as ``prompt_text``."""
    problems: list[tuple[Loc, str]] = []
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return problems
    for name, agent in agents.items():
        if not isinstance(agent, dict) or not isinstance(agent.get("prompt"), str):
            continue
        try:
            agent["prompt_text"] = _read_prompt(base_dir, agent["prompt"])
        except _PromptError as exc:
            problems.append((("agents", name, "prompt"), str(exc)))
    return problems


class _PromptError(Exception):
    """A prompt file that may not, or cannot, be read."""


def _read_prompt(base_dir: Path, given: str) -> str:
    """The text of prompt file ``given``, which must lie in ``base_dir`` or below it.

    Symlinks are resolved before the check, so a link inside the folder to a file
    outside it is refused like ``../`` is.
    """
    if "\x00" in given or not given.strip():
        raise _PromptError(f"prompt path {given!r} is not a file name")
    relative = Path(given)
    if relative.is_absolute():
        raise _PromptError(f"prompt path {given!r} is absolute: give it relative to the spec's folder")
    root = base_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise _PromptError(
            f"prompt path {given!r} leads outside the spec's folder ({root}): "
            "prompt files must live in it or below it"
        )
    path = base_dir / relative
    if target.exists() and not target.is_file():
        raise _PromptError(f"cannot read prompt {path}: not a regular file")
    try:
        with target.open("rb") as stream:
            raw = stream.read(MAX_PROMPT_BYTES + 1)
    except OSError as exc:
        raise _PromptError(f"cannot read prompt {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PROMPT_BYTES:
        raise _PromptError(
            f"prompt {path} is larger than {MAX_PROMPT_BYTES // 1024} KiB, the most a prompt may be"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _PromptError(f"cannot read prompt {path}: not UTF-8 text (byte {exc.start})") from None


def snapshot_of(spec: ProcessSpec, source: str = "") -> SpecSnapshot:
    """Freeze ``spec`` with its digest, ready to pass to a new case."""
    return SpecSnapshot(spec=spec, sha256=spec.sha256(), source=source)


def cross_reference_problems(
    spec: ProcessSpec, *, roles: dict[str, int] | None = None
) -> list[tuple[Loc, str]]:
    """Problems a single field cannot show: names, order, CEL, contracts, roles."""
    problems: list[tuple[Loc, str]] = []
    problems += _contract_problems(spec)
    problems += _prompt_problems(spec)
    problems += _flow_problems(spec)
    problems += _decision_problems(spec)
    problems += _ladder_problems(spec, roles)
    return problems


def wiring_problems(
    spec: ProcessSpec, *, activities: set[str] | None, providers: set[str] | None
) -> list[tuple[Loc, str]]:
    """Names the deployment must provide: activities the worker serves, LLM providers."""
    found: list[tuple[Loc, str]] = []
    for name, agent in spec.agents.items():
        if activities is not None and agent.kind == "python" and agent.activity not in activities:
            found.append(
                (("agents", name, "activity"), _unknown("activity", agent.activity_name, activities))
            )
        if providers is not None and agent.kind == "llm" and agent.provider not in providers:
            found.append((("agents", name, "provider"), _unknown("LLM provider", agent.provider, providers)))
    if activities is not None and spec.action is not None and spec.action.activity not in activities:
        found.append((("action", "activity"), _unknown("activity", spec.action.activity, activities)))
    return found


def _unknown(what: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = "no module of the app provides it" if what == "activity" else "not in the providers file"
    return f"unknown {what} {name!r} ({where}){hint}"


def _contract_problems(spec: ProcessSpec) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    targets: list[tuple[Loc, str]] = [(("input",), spec.input)]
    targets += [(("agents", name, "output"), agent.output) for name, agent in spec.agents.items()]
    for loc, path in targets:
        try:
            resolve_contract(path)
        except ContractError as exc:
            found.append((loc, f"contract does not resolve: {exc}"))
    return found


def _placed_steps(spec: ProcessSpec) -> list[tuple[Loc, StepSpec, list[str]]]:
    """Each step with its YAML path and the names run before it (a member never sees its siblings)."""
    placed: list[tuple[Loc, StepSpec, list[str]]] = []
    earlier: list[str] = []
    for i, item in enumerate(spec.flow):
        if isinstance(item, GroupSpec):
            placed += [
                (("flow", i, "parallel", m), member, list(earlier)) for m, member in enumerate(item.parallel)
            ]
        else:
            placed.append((("flow", i), item, list(earlier)))
        earlier += item_names(item)
    return placed


def _prompt_problems(spec: ProcessSpec) -> list[tuple[Loc, str]]:
    """Placeholders in prompt templates must name the case, feedback or a step."""
    known = {"case", "feedback", *spec.names()}
    found: list[tuple[Loc, str]] = []
    for loc, step, _ in _placed_steps(spec):
        agent = spec.agents.get(step.agent_name)
        if agent is None or agent.prompt_text is None or step.sees is None:
            continue
        template = string.Template(agent.prompt_text)
        hidden = sorted((set(template.get_identifiers()) - {"feedback", *step.sees}) & known)
        if template.is_valid() and hidden:
            found.append(
                (
                    (*loc, "sees"),
                    f"the prompt of {step.agent_name!r} uses ${hidden[0]}, which this step does not see",
                )
            )
    for name, agent in spec.agents.items():
        if agent.prompt_text is None:
            continue
        template = string.Template(agent.prompt_text)
        if not template.is_valid():
            found.append((("agents", name, "prompt"), "prompt has a malformed $placeholder"))
            continue
        for ident in template.get_identifiers():
            if ident not in known:
                found.append(
                    (("agents", name, "prompt"), f"prompt uses ${ident}; known: {', '.join(sorted(known))}")
                )
    if spec.token_budget is not None and not any(a.kind == "llm" for a in spec.agents.values()):
        found.append((("token_budget",), "a token budget needs at least one llm agent"))
    return found


def _flow_problems(spec: ProcessSpec) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    names = spec.names()
    seen: set[str] = set()
    for i, item in enumerate(spec.flow):
        if isinstance(item, GroupSpec):
            found += _name_problems(("flow", i, "group"), item.group, seen)
            found += _group_problems(spec, item, i, names)
    for loc, step, earlier in _placed_steps(spec):
        found += _name_problems((*loc, "step"), step.step, seen)
        if step.agent_name not in spec.agents:
            field = "agent" if step.agent else "step"
            found.append(((*loc, field), f"unknown agent {step.agent_name!r}"))
        visible = {"case", *earlier, step.step}
        siblings = set(item_names(spec.flow[int(loc[1])])) if "parallel" in loc else set()
        found += _sees_problems(step, loc, earlier, names, siblings)
        if step.when is not None:
            found += _cel_problems((*loc, "when"), step.when, {"case", *earlier}, names)
        for g, guard in enumerate(step.guards):
            found += _cel_problems((*loc, "guards", g), guard.expr, visible, names)
        if isinstance(step, MemberSpec):
            found += _member_problems(spec, step, loc, visible, names)
        else:
            found += _review_problems(
                step, loc, earlier, names, visible, {g.group for g in spec.flow if isinstance(g, GroupSpec)}
            )
    return found


def _name_problems(loc: Loc, name: str, seen: set[str]) -> list[tuple[Loc, str]]:
    """A step's or group's name: not reserved, not taken (``seen`` collects them)."""
    found: list[tuple[Loc, str]] = []
    if name in RESERVED_NAMES:
        found.append((loc, f"{name!r} is reserved ({RESERVED_NAMES[name]})"))
    if name in seen:
        found.append((loc, f"duplicate step name {name!r}"))
    seen.add(name)
    return found


def _sees_problems(
    step: StepSpec, at: Loc, earlier: list[str], names: list[str], siblings: set[str]
) -> list[tuple[Loc, str]]:
    """``sees`` may name the case and steps that ran before this one, each once."""
    if step.sees is None:
        return []
    found: list[tuple[Loc, str]] = []
    for s, name in enumerate(step.sees):
        loc: Loc = (*at, "sees", s)
        if step.sees.index(name) != s:
            found.append((loc, f"{name!r} is named twice"))
        elif name != "case" and name not in names:
            found.append((loc, f"unknown step {name!r} (a step sees 'case' and earlier steps)"))
        elif name in siblings:
            found.append((loc, f"{name!r} runs in the same group: members see only what came before it"))
        elif name != "case" and name not in earlier:
            found.append((loc, f"step {name!r} has not run yet here: a step sees only earlier steps"))
    return found


def _review_problems(
    step: StepSpec, loc: Loc, earlier: list[str], names: list[str], visible: set[str], groups: set[str]
) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    if step.reviews is None:
        for field in ("passes", "findings"):
            if getattr(step, field) is not None:
                found.append(((*loc, field), f"'{field}' only applies to a review step"))
        return found
    if step.reviews not in names:
        found.append(((*loc, "reviews"), f"unknown step {step.reviews!r}"))
    elif step.reviews in groups:
        found.append(((*loc, "reviews"), f"{step.reviews!r} is a group: a review sends findings to one step"))
    elif step.reviews not in earlier:
        found.append(((*loc, "reviews"), f"a review must follow the step it reviews ({step.reviews!r})"))
    if step.passes is None:
        found.append(((*loc, "passes"), "a review step needs 'passes' (CEL, true = accepted)"))
    for field in ("passes", "findings"):
        expr = getattr(step, field)
        if expr is not None:
            found += _cel_problems((*loc, field), expr, visible, names)
    return found


def _member_problems(
    spec: ProcessSpec, member: MemberSpec, loc: Loc, visible: set[str], names: list[str]
) -> list[tuple[Loc, str]]:
    """A group member's opinion fields fit its group: a review group's members each give one."""
    group = next(g for g in spec.flow if isinstance(g, GroupSpec) and member in g.parallel)
    found: list[tuple[Loc, str]] = []
    if member.reviews is not None:
        found.append(((*loc, "reviews"), "members review together: put 'reviews' on the group"))
    opinion = [f for f in ("passes", "verdict") if getattr(member, f) is not None]
    if group.reviews is None:
        for field in (*opinion, *(["findings"] if member.findings is not None else [])):
            found.append(((*loc, field), f"'{field}' only applies in a group that reviews a step"))
    elif not opinion:
        found.append(
            (
                loc,
                "a reviewer in a group needs 'passes' (CEL, true = accepted) "
                "or 'verdict' (CEL, a word on the scale)",
            )
        )
    elif len(opinion) == 2:
        found.append(((*loc, "verdict"), "give either 'passes' or 'verdict', not both"))
    for field in ("passes", "verdict", "findings"):
        expr = getattr(member, field)
        if expr is not None:
            found += _cel_problems((*loc, field), expr, visible, names)
    if group.reviews is not None and member.verdict is not None:
        found += _scale_coverage(spec, group, member, (*loc, "verdict"))
    return found


_FIELD_PATH = re.compile(r"^\s*([a-z][a-z0-9_]*)\.([A-Za-z_]\w*)\s*$")


def _scale_coverage(
    spec: ProcessSpec, group: GroupSpec, member: MemberSpec, loc: Loc
) -> list[tuple[Loc, str]]:
    """A verdict read from a contract field with fixed values must find each value on the scale."""
    assert member.verdict is not None
    match = _FIELD_PATH.match(member.verdict)
    agent = spec.agents.get(member.agent_name)
    if match is None or match.group(1) != member.step or agent is None:
        return []
    try:
        model = resolve_contract(agent.output)
    except ContractError:
        return []  # reported by the contract check
    field = model.model_fields.get(match.group(2))
    if field is None:
        return [(loc, f"{agent.output} has no field {match.group(2)!r}")]
    values = _fixed_values(field.annotation)
    if values is None:
        return []
    missing = [v for v in values if v not in group.verdicts]
    if missing:
        scale = ", ".join(group.verdicts)
        return [
            (
                loc,
                f"{member.step} can answer {missing[0]!r}, which the group's scale ({scale}) does not cover",
            )
        ]
    return []


def _fixed_values(annotation: Any) -> list[str] | None:
    """The values a ``Literal``/``Enum`` field (optionally ``| None``) can take, as strings."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        parts = [_fixed_values(a) for a in typing.get_args(annotation) if a is not type(None)]
        if parts and all(p is not None for p in parts):
            return [v for p in parts if p is not None for v in p]
    return None


def _group_problems(
    spec: ProcessSpec, group: GroupSpec, index: int, names: list[str]
) -> list[tuple[Loc, str]]:
    """A group's routing, review target and resolution: each consistent with the rest."""
    loc: Loc = ("flow", index)
    earlier = names[: names.index(group.group)]
    found: list[tuple[Loc, str]] = []
    if group.when is not None:
        found += _cel_problems((*loc, "when"), group.when, {"case", *earlier}, names)
    resolution = ("resolve", "scale", "passing", "quorum", "ladder")
    if group.reviews is None:
        for field in resolution:
            if getattr(group, field) is not None:
                found.append(((*loc, field), f"'{field}' only applies to a group that reviews a step"))
        if group.escalating:
            found.append(((*loc, "escalating"), "'escalating' only applies to a group that reviews a step"))
        return found
    groups = {g.group for g in spec.flow if isinstance(g, GroupSpec)}
    if group.reviews not in names:
        found.append(((*loc, "reviews"), f"unknown step {group.reviews!r}"))
    elif group.reviews in groups:
        found.append(
            ((*loc, "reviews"), f"{group.reviews!r} is a group: a review sends findings to one step")
        )
    elif group.reviews not in earlier:
        found.append(((*loc, "reviews"), f"a review must follow the step it reviews ({group.reviews!r})"))
    if group.resolve is None:
        found.append(
            (
                (*loc, "resolve"),
                "a reviewing group needs 'resolve': unanimous, most_conservative, quorum "
                "or escalate_on_disagreement",
            )
        )
    scale = group.verdicts
    if len(set(scale)) != len(scale):
        found.append(((*loc, "scale"), "a verdict is named twice on the scale"))
    for field in ("passing", "escalating"):
        words = getattr(group, field) or []
        for w, word in enumerate(words):
            if word not in scale:
                found.append(((*loc, field, w), f"{word!r} is not on the scale ({', '.join(scale)})"))
    if not group.passing_verdicts:
        found.append(((*loc, "passing"), "at least one verdict must pass"))
    both = set(group.passing_verdicts) & set(group.escalating)
    if both:
        found.append(((*loc, "escalating"), f"{sorted(both)[0]!r} cannot both pass and escalate"))
    if group.resolve == "quorum":
        if group.quorum is None:
            found.append(((*loc, "quorum"), "resolve: quorum needs 'quorum' (how many must pass)"))
        elif group.quorum > len(group.parallel):
            found.append(
                ((*loc, "quorum"), f"quorum {group.quorum} is more than the {len(group.parallel)} members")
            )
    elif group.quorum is not None:
        found.append(((*loc, "quorum"), "'quorum' only applies to resolve: quorum"))
    if group.ladder is not None and group.ladder not in spec.ladders:
        found.append(((*loc, "ladder"), f"unknown ladder {group.ladder!r}"))
    asks_people = group.resolve == "escalate_on_disagreement" or bool(group.escalating)
    if asks_people and group.ladder is None and spec.escalation is None:
        found.append(
            (
                (*loc, "ladder"),
                "this group can send a case to a person: name a 'ladder' (or give the spec an escalation)",
            )
        )
    return found


def _decision_problems(spec: ProcessSpec) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    names = spec.names()
    steps = [s.step for s in spec.steps()]
    visible = {"case", "overruled", *names}
    for i, rule in enumerate(spec.decide):
        loc: Loc = ("decide", i)
        if rule.when is not None:
            found += _cel_problems((*loc, "when"), rule.when, visible, names)
        elif i != len(spec.decide) - 1:
            found.append((loc, "a rule without 'when' matches everything; later rules never run"))
        if not isinstance(rule.then, str) and rule.then.approval not in spec.ladders:
            found.append(((*loc, "then", "approval"), f"unknown ladder {rule.then.approval!r}"))
    if spec.decide[-1].when is not None:
        found.append(
            (
                ("decide", len(spec.decide) - 1),
                "the last rule must have no 'when', so every case has a written outcome",
            )
        )
    if spec.escalation is not None and spec.escalation.ladder not in spec.ladders:
        found.append((("escalation", "ladder"), f"unknown ladder {spec.escalation.ladder!r}"))
    if spec.changes_go_to is not None and spec.changes_go_to not in steps:
        found.append((("changes_go_to",), f"unknown step {spec.changes_go_to!r}"))
    for field in ("amount", "summary"):
        expr = getattr(spec.inbox, field)
        if expr is not None:
            found += _cel_problems(("inbox", field), expr, visible, names)
    return found


def _ladder_problems(spec: ProcessSpec, roles: dict[str, int] | None) -> list[tuple[Loc, str]]:
    """Rungs naming roles nobody holds, or needing more approvers than the role has."""
    if roles is None:
        return []
    found: list[tuple[Loc, str]] = []
    for name, rungs in spec.ladders.items():
        for r, rung in enumerate(rungs):
            members = roles.get(rung.role)
            if members is None:
                found.append(
                    (("ladders", name, r, "role"), f"unknown role {rung.role!r} (not in the roles directory)")
                )
            elif members < rung.approvers:
                found.append(
                    (
                        ("ladders", name, r, "approvers"),
                        f"needs {rung.approvers} approvers but role {rung.role!r} has {members}",
                    )
                )
    return found


def _cel_problems(loc: Loc, expr: str, visible: set[str], steps: list[str]) -> list[tuple[Loc, str]]:
    try:
        used = referenced_names(expr)
    except RuleError as exc:
        return [(loc, str(exc))]
    if nesting(expr) > MAX_NESTING:
        return [
            (
                loc,
                f"{expr!r} nests {nesting(expr)} comprehensions; at most {MAX_NESTING} are allowed "
                "(each one multiplies the cost by a list's size, and rules run inside the workflow)",
            )
        ]
    bound = set(_MACRO_VAR.findall(expr)) | _CEL_BUILTINS
    found: list[tuple[Loc, str]] = []
    for name in used:
        if name in visible or name in bound:
            continue
        if name in steps:
            found.append((loc, f"{expr!r} reads step {name!r}, which has not run yet here"))
        else:
            known = ", ".join(sorted(visible))
            found.append((loc, f"{expr!r} reads unknown name {name!r} (known: {known})"))
    return found


def _clean_loc(loc: tuple[str | int, ...]) -> Loc:
    """Drop pydantic's union-branch labels (``literal[...]``, ``Approval``) from a path."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))


def _where(loc: Loc, lines: dict[Loc, int]) -> str:
    text = format_location(loc) or "(document)"
    for cut in range(len(loc), -1, -1):
        line = lines.get(loc[:cut])
        if line is not None:
            return f"{text} (line {line})"
    return text


def _too_large() -> str:
    return f"(document): larger than {MAX_SPEC_BYTES // 1024} KiB, the most a spec may be"


class _RefusedError(Exception):
    """The YAML may not be composed any further; ``problems`` say why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems


class _SpecLoader(yaml.SafeLoader):
    """A safe loader that never follows an alias, and stops at :data:`MAX_DEPTH` or :data:`MAX_NODES`.

    An alias is noted as a problem where it stands and replaced by null, so that
    every alias is reported in one pass and none is ever expanded: the composed
    tree is no larger than the text.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.alias_problems: dict[str, None] = {}  # ordered, one per line and name
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()  # type: ignore[no-untyped-call]
            self.alias_problems[
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                "in a spec: write the value out"
            ] = None
            return yaml.ScalarNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        self._nodes += 1
        if self._depth >= MAX_DEPTH or self._nodes > MAX_NODES:
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            if self._depth >= MAX_DEPTH:
                raise _RefusedError(
                    [f"line {line}: nested deeper than {MAX_DEPTH} levels, the most a spec may be"]
                )
            raise _RefusedError([f"line {line}: more than {MAX_NODES} YAML values, the most a spec may hold"])
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _parse(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """The spec's data and the line each YAML path starts on, from one bounded composition."""
    try:
        loader = _SpecLoader(text)  # the reader refuses control characters here
        try:
            root = loader.get_single_node()
            if loader.alias_problems:
                raise _RefusedError(list(loader.alias_problems))
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except _RefusedError as exc:
        raise SpecError(source, exc.problems) from None
    except yaml.reader.ReaderError as exc:  # no mark: its position is a character offset
        line = text.count("\n", 0, exc.position) + 1
        character = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise SpecError(
            source, [f"line {line}: YAML syntax error: character {character}: {exc.reason}"]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(source, [_yaml_problem(exc)]) from None
    return data, _line_index(root)


def _line_index(root: yaml.Node | None) -> dict[Loc, int]:
    """Map each YAML path to the 1-based line it starts on (the tree has no aliases)."""
    index: dict[Loc, int] = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                child = (*path, key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"
    return f"YAML syntax error: {problem}"
