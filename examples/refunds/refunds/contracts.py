"""Contracts of the ``refund-request`` process: the case and each agent's handoff.

Money is in the order's currency as a float rounded to cents: CEL, which the
spec's rules are written in, has no decimal type, and the ledger stores cents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Money = Annotated[float, Field(ge=0, le=1_000_000), AfterValidator(lambda v: round(v, 2))]
ReasonCode = Literal["defective", "not_as_described", "late_delivery", "changed_mind", "other"]


class RefundRequest(BaseModel):
    """A customer's request for a refund: the case input."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(pattern=r"^ORD-\d{4,}$")
    customer_id: str = Field(pattern=r"^CUS-\d{3,}$")
    requested_amount: Money = Field(gt=0)
    reason: ReasonCode
    note: str = Field(default="", max_length=2000)


class OrderFacts(BaseModel):
    """What intake found in the order database, and whether it checks out."""

    order_id: str
    order_exists: bool
    customer_id: str | None = None
    customer_name: str | None = None
    category: str | None = None
    amount_paid: Money = 0.0
    already_refunded: Money = 0.0
    refundable_amount: Money = 0.0
    delivered_at: datetime | None = None
    days_since_delivery: int | None = None
    problems: list[str] = Field(default_factory=list)


class RefundProposal(BaseModel):
    """The drafter's proposal: how much, why, and what the customer is told."""

    order_id: str
    amount: Money = Field(gt=0)
    reason_code: ReasonCode
    message: str = Field(min_length=20, max_length=1000)


class PolicyFinding(BaseModel):
    """One policy problem; ``max_amount`` says what would comply, when anything would."""

    code: str
    message: str
    max_amount: Money | None = None


class PolicyVerdict(BaseModel):
    """The policy agent's review of a proposal."""

    compliant: bool
    findings: list[PolicyFinding] = Field(default_factory=list)
    max_allowed: Money = 0.0


class FraudVerdict(BaseModel):
    """The fraud reviewer's opinion of a proposal, on the panel's scale: reject > escalate > approve."""

    verdict: Literal["approve", "escalate", "reject"]
    signals: list[PolicyFinding] = Field(default_factory=list)


class Explanation(BaseModel):
    """The explainer's note to the customer on what the policy review found."""

    message: str = Field(min_length=20, max_length=1500)
    cites: list[str] = Field(default_factory=list, description="Policy rules the note relies on.")
