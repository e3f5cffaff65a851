"""The ``baton.check_submission`` activity: whether a case's submission is signed as required.

The check runs in an activity, not in workflow code, so its answer (signing required or
not, which key signed, or why the submission is refused) is recorded in the case's
history: a replay sees the same answer even after the workers' keys have rotated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from baton.messages import SubmissionCheck, SubmissionVerdict
from baton.signing import SigningPolicy, submission_message


class SigningActivities:
    """Binds the worker's :class:`SigningPolicy` to the activity the workflow calls at start."""

    def __init__(self, policy: SigningPolicy) -> None:
        self._policy = policy

    @activity.defn(name="baton.check_submission")
    async def check_submission(self, check: SubmissionCheck) -> SubmissionVerdict:
        """Whether decisions on this case must be signed, and whether its submission is."""
        if not self._policy.required:
            return SubmissionVerdict(required=False)
        assert self._policy.keys is not None, "a policy that requires signing has keys"
        if check.case_id != check.workflow_id:
            return SubmissionVerdict(
                required=True, problem=f"case id {check.case_id!r} is not the workflow id"
            )
        if check.spec_content_sha256 != check.spec_sha256:
            return SubmissionVerdict(
                required=True, problem="the spec's digest does not match the spec it came with"
            )
        message = submission_message(check.case_id, check.submitted_by, check.case_sha256, check.spec_sha256)
        problem = self._policy.keys.problem(message, check.signature, what="submission")
        if problem is not None:
            return SubmissionVerdict(required=True, problem=problem)
        assert check.signature is not None
        return SubmissionVerdict(required=True, signed_by=check.signature.key_id)

    def all(self) -> list[Callable[..., Any]]:
        """The activities to register."""
        return [self.check_submission]
