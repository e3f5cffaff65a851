"""Process specs: the governance a case runs under, written down before deployment.

``models`` holds the pydantic shape of a spec, ``loader`` reads YAML and reports
every problem with its location, ``diagram`` draws a spec as Mermaid.
"""

from baton.spec.loader import load_spec, load_spec_text, snapshot_of
from baton.spec.models import (
    ActionSpec,
    AgentSpec,
    DecisionRule,
    Escalation,
    Guard,
    ProcessSpec,
    RetrySpec,
    Rung,
    SpecSnapshot,
    StepSpec,
    TimeoutSpec,
)

__all__ = [
    "ActionSpec",
    "AgentSpec",
    "DecisionRule",
    "Escalation",
    "Guard",
    "ProcessSpec",
    "RetrySpec",
    "Rung",
    "SpecSnapshot",
    "StepSpec",
    "TimeoutSpec",
    "load_spec",
    "load_spec_text",
    "snapshot_of",
]
