"""Baton's custom search attributes: the inbox, in Temporal's visibility store.

Registered by ``baton dev`` (and by an operator on a real cluster, see README);
a case keeps them current only when the client saw them registered at start.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PROCESS = SearchAttributeKey.for_keyword("BatonProcess")
STAGE = SearchAttributeKey.for_keyword("BatonStage")
AWAITING_ROLE = SearchAttributeKey.for_keyword("BatonAwaitingRole")
OUTCOME = SearchAttributeKey.for_keyword("BatonOutcome")
AMOUNT = SearchAttributeKey.for_float("BatonAmount")
DEADLINE = SearchAttributeKey.for_datetime("BatonDeadline")
DECIDERS = SearchAttributeKey.for_keyword_list("BatonDeciders")
"""The people whose decisions a closed case applied: the auditor's "decided by" search.

Newer than the rest, so a namespace may lack it: the client records at start whether it
is registered (``CaseStart.index_deciders``) and the case sets it only then."""

ALL = (PROCESS, STAGE, AWAITING_ROLE, OUTCOME, AMOUNT, DEADLINE)
"""The attributes the inbox needs; a namespace without all of them gets none."""

TYPE_NAMES_BY_NAME = {
    PROCESS.name: "Keyword",
    STAGE.name: "Keyword",
    AWAITING_ROLE.name: "Keyword",
    OUTCOME.name: "Keyword",
    AMOUNT.name: "Double",
    DEADLINE.name: "Datetime",
    DECIDERS.name: "KeywordList",
}
"""``temporal server start-dev --search-attribute NAME=TYPE`` spellings."""

AWAITING = "awaiting_approval"
HELD = "held"
RUNNING = "running"
CLOSED = "closed"
