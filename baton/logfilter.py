"""One log line, not a stack trace, for an activity failure Baton raised on purpose.

Temporal's activity worker logs every failed attempt as "Completing activity as
failed" on the ``temporalio.activity`` logger with ``exc_info``, so each expected
condition (an LLM server answering 429, a refused handoff, a business rule saying
no) fills the worker's log with a traceback that says nothing the error message
does not. Baton raises those as :class:`temporalio.exceptions.ApplicationError`
and Temporal retries them by policy, so they are outcomes, not bugs.

:func:`install_activity_log_filter` rewrites exactly those records into one line
(activity type, attempt, retryable or not, error type and message). Any other
exception (a ``KeyError``, a ``RuntimeError``) is a bug and keeps its full traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from temporalio.exceptions import ApplicationError

ACTIVITY_LOGGER = "temporalio.activity"
"""The logger behind ``temporalio.activity.logger``, which logs failed attempts."""

FAILURE_MARK = "ActivityFailure"
"""The ``__temporal_error_identifier`` Temporal puts on its "activity failed" records."""


class ExpectedActivityFailureFilter(logging.Filter):
    """Turns the record of an ApplicationError attempt into one line without a traceback.

    It never drops a record: the failure is still logged, at the level Temporal
    chose (WARNING, or DEBUG for a BENIGN error), just without the stack.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite an expected failure's record in place; pass every record on."""
        if record.__dict__.get("__temporal_error_identifier") != FAILURE_MARK or not record.exc_info:
            return True
        error = record.exc_info[1]
        if not isinstance(error, ApplicationError):
            return True  # unexpected: keep the traceback, it is what someone needs to fix it
        details: Mapping[str, Any] = record.__dict__.get("temporal_activity") or {}
        record.msg = describe_failure(error, details)
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


def describe_failure(error: ApplicationError, details: Mapping[str, Any]) -> str:
    """One line for a failed attempt, from the error and Temporal's activity details.

    Args:
        error: what the activity raised.
        details: the ``temporal_activity`` mapping Temporal attaches to the record
            (activity_type, attempt, workflow_id, ...); may be empty.

    Returns:
        e.g. ``activity llm.chat attempt 1 failed (retryable; workflow refund-7):
        ApplicationError[LlmRetryable]: LLM server answered 429: slow down``.
    """
    activity = details.get("activity_type", "?")
    attempt = details.get("attempt", "?")
    retry = "non-retryable" if error.non_retryable else "retryable"
    where = f"; workflow {details['workflow_id']}" if details.get("workflow_id") else ""
    kind = f"{type(error).__name__}[{error.type}]" if error.type else type(error).__name__
    line = f"activity {activity} attempt {attempt} failed ({retry}{where}): {kind}: {error.message}"
    cause = error.__cause__
    if cause is not None:
        line += f" (caused by {type(cause).__name__}: {cause})"
    return " | ".join(part.strip() for part in line.splitlines() if part.strip())


def install_activity_log_filter() -> None:
    """Log expected activity failures (ApplicationError) as one line; idempotent.

    Call once in a worker process before it runs activities. Calling it again adds
    nothing, so library code and the worker's entry point may both call it.
    """
    logger = logging.getLogger(ACTIVITY_LOGGER)
    if not any(isinstance(f, ExpectedActivityFailureFilter) for f in logger.filters):
        logger.addFilter(ExpectedActivityFailureFilter())
