"""No tracebacks for expected conditions: each is one line naming the cause and the fix.

A bad case file, a case whose payloads the CLI cannot decrypt, and an activity
failing on purpose (ApplicationError) are all things that happen in normal use;
none of them may surface as a Python traceback.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from baton.casefile import MAX_DEPTH, read_case_file
from baton.client import BatonClient
from baton.codec import load_codec, with_codec
from baton.errors import BatonUsageError
from baton.logfilter import ACTIVITY_LOGGER, ExpectedActivityFailureFilter, install_activity_log_filter
from baton.messages import Outcome
from tests.conftest import Running, refund

# --- case files -------------------------------------------------------------------------


def test_a_case_file_that_is_not_utf8_names_the_byte_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b'{"reason": "caf\xe9"}')
    with pytest.raises(BatonUsageError) as caught:
        read_case_file(str(path))
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 15); save it as UTF-8"


def test_json_nested_100000_deep_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BatonUsageError) as caught:
        read_case_file(str(path))
    assert str(caught.value) == f"{path}: nested too deeply (more than {MAX_DEPTH} levels); flatten the case"


@pytest.mark.parametrize(
    "text",
    [
        "case: " + "[" * 100_000 + "]" * 100_000 + "\n",  # the parser itself runs out of stack
        "".join("  " * i + "- \n" for i in range(MAX_DEPTH + 1)),  # parses, but past the bound
    ],
    ids=["flow-100000", "block-65"],
)
def test_deep_yaml_is_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(BatonUsageError, match=r"nested too deeply \(more than 64 levels\)") as caught:
        read_case_file(str(path))
    assert "\n" not in str(caught.value)


def test_nesting_up_to_the_bound_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    value = read_case_file(str(path))
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []


def test_yaml_aliases_that_expand_or_loop_are_refused(tmp_path: Path) -> None:
    looping = tmp_path / "loop.yaml"
    looping.write_text("a: &x [1, *x]\n")
    with pytest.raises(BatonUsageError, match="contains itself"):
        read_case_file(str(looping))
    laughs = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    laughs += [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdef", "bcdefg", strict=True)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(laughs) + "\n")  # 7 lines standing for 10 million values
    with pytest.raises(BatonUsageError, match="more than 200000 values"):
        read_case_file(str(bomb))


def test_syntax_errors_and_overlong_numbers_are_one_line(tmp_path: Path) -> None:
    cases = {
        "bad.json": ('{"a": 1,}', "line 1, column 9: Expecting property name"),
        "bad.yaml": ("a: [1, 2\nb: 3\n", "line 2, column 2: expected ',' or ']'"),
        "long.json": ('{"a": ' + "9" * 5000 + "}", "a number has more than"),
        "long.yaml": ("a: " + "9" * 5000 + "\n", "a number has more than"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(BatonUsageError) as caught:
            read_case_file(str(path))
        assert str(caught.value).startswith(f"{path}: ")
        assert expected in str(caught.value)
        assert "\n" not in str(caught.value)


def test_good_json_and_yaml_cases_read_as_before(tmp_path: Path) -> None:
    case = {"order_id": "ORD-1", "requested_amount": 45.5, "items": [{"sku": "A", "qty": 2}], "note": "café"}
    as_json = tmp_path / "case.json"
    as_json.write_text('{"order_id": "ORD-1", "requested_amount": 45.5, '
                       '"items": [{"sku": "A", "qty": 2}], "note": "café"}', encoding="utf-8")  # fmt: skip
    as_yaml = tmp_path / "case.yml"
    as_yaml.write_text(
        "order_id: ORD-1\nrequested_amount: 45.5\nitems:\n  - sku: A\n    qty: 2\nnote: café\n",
        encoding="utf-8",
    )
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + as_json.read_bytes())  # as some editors save it
    assert read_case_file(str(as_json)) == case
    assert read_case_file(str(as_yaml)) == case
    assert read_case_file(str(with_bom)) == case
    with pytest.raises(BatonUsageError, match="cannot read"):
        read_case_file(str(tmp_path / "missing.json"))


# --- encrypted cases, read without (the right) keys ----------------------------------------

KEY, OTHER_KEY = os.urandom(32), os.urandom(32)
NEEDS_KEYS = "is encrypted: set BATON_CODEC_KEYS (or BATON_CODEC_KEYS_FILE) to the keys its workers use"


def client_with(env: WorkflowEnvironment, keys: str | None) -> Client:
    """A client on the session's server whose data converter has ``keys`` (or no codec)."""
    config = env.client.config()
    codec = load_codec({"BATON_CODEC_KEYS": keys} if keys else {})
    config["data_converter"] = with_codec(config["data_converter"], codec)
    return Client(**config)


def spec(*pairs: tuple[str, bytes]) -> str:
    return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in pairs)


async def test_an_encrypted_case_read_without_keys_says_to_set_them(
    env: WorkflowEnvironment, on_dev: Running
) -> None:
    running = Running(client_with(env, spec(("k1", KEY))), on_dev.settings, on_dev.refunds, on_dev.llm)

    def reading_with(keys: str | None) -> BatonClient:
        client = running.baton  # same queue and wiring as the worker, other keys
        client.temporal = client_with(env, keys)
        return client

    async with running.worker():
        sealed = running.baton
        plain, unknown_id = reading_with(None), reading_with(spec(("k9", KEY)))
        wrong_bytes = reading_with(spec(("k1", OTHER_KEY)))
        case_id = await sealed.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        for _ in range(200):  # until it waits for a person
            if (await sealed.status(case_id)).awaiting:
                break
            await asyncio.sleep(0.05)
        assert (await sealed.status(case_id)).awaiting is not None

        for read in (plain.status, plain.audit):
            with pytest.raises(BatonUsageError) as caught:
                await read(case_id)
            assert str(caught.value) == f"case {case_id!r} {NEEDS_KEYS}"
        with pytest.raises(BatonUsageError, match="encrypted with key 'k1', which BATON_CODEC_KEYS"):
            await unknown_id.status(case_id)
        with pytest.raises(BatonUsageError, match="encrypted with key 'k1', but the key with that id"):
            await wrong_bytes.audit(case_id)
        # A decision from a client without the keys is refused before it is sent.
        with pytest.raises(BatonUsageError, match=re.escape(NEEDS_KEYS)):
            await plain.approve(case_id, approver="alice")

        # The inbox lists the case anyway; only the (encrypted) summary is replaced.
        for _ in range(200):  # visibility is eventually consistent
            if any(p.case_id == case_id for p in await sealed.pending()):
                break
            await asyncio.sleep(0.05)
        summaries = {}
        for name, client in [
            ("plain", plain),
            ("unknown", unknown_id),
            ("wrong", wrong_bytes),
            ("ok", sealed),
        ]:
            listed = [p for p in await client.pending() if p.case_id == case_id]
            assert len(listed) == 1, name
            summaries[name] = listed[0].summary
        assert summaries["plain"] == "(encrypted: set BATON_CODEC_KEYS)"
        assert summaries["unknown"] == "(encrypted: its key 'k1' is not among BATON_CODEC_KEYS)"
        assert summaries["wrong"] == "(encrypted: the key 'k1' in BATON_CODEC_KEYS does not decrypt it)"
        assert summaries["ok"]
        assert not summaries["ok"].startswith("(encrypted")
        assert [e for e in await sealed.audit(case_id) if e.actor == "alice"] == []  # nothing was sent

        await sealed.approve(case_id, approver="alice")
        result = await sealed.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    with pytest.raises(BatonUsageError) as caught:
        await plain.result(case_id)
    assert str(caught.value) == f"case {case_id!r} {NEEDS_KEYS}"


# --- expected activity failures in the worker's log ----------------------------------------


@activity.defn(name="expected-errors.rate-limited")
async def rate_limited() -> str:
    """Fails its first attempt the way the LLM activity reports a 429."""
    if activity.info().attempt == 1:
        raise ApplicationError("LLM server answered 429: slow down", type="LlmRetryable")
    return "ok"


@activity.defn(name="expected-errors.buggy")
async def buggy() -> str:
    """Fails its first attempt with a bug (not an ApplicationError)."""
    if activity.info().attempt == 1:
        raise RuntimeError("a bug in the activity")
    return "ok"


@workflow.defn(name="ExpectedErrorsProbe")
class ExpectedErrorsProbe:
    """Runs one activity by name with a fast retry."""

    @workflow.run
    async def run(self, name: str) -> str:
        result: str = await workflow.execute_activity(
            name,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3),
        )
        return result


@pytest.fixture
def log_filter() -> Iterator[None]:
    """The filter installed (twice: it must stay one filter) and removed afterwards."""
    logger = logging.getLogger(ACTIVITY_LOGGER)
    install_activity_log_filter()
    install_activity_log_filter()
    ours = [f for f in logger.filters if isinstance(f, ExpectedActivityFailureFilter)]
    assert len(ours) == 1
    yield
    for f in ours:
        logger.removeFilter(f)


async def test_expected_activity_failures_log_one_line_and_bugs_keep_their_traceback(
    env: WorkflowEnvironment, log_filter: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=ACTIVITY_LOGGER)
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ExpectedErrorsProbe],
        activities=[rate_limited, buggy],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        ids = {}
        for name in ("expected-errors.rate-limited", "expected-errors.buggy"):
            ids[name] = f"probe-{uuid.uuid4()}"
            out = await env.client.execute_workflow(
                ExpectedErrorsProbe.run, name, id=ids[name], task_queue=queue
            )
            assert out == "ok"  # the second attempt succeeds either way

    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    failed = [r for r in caplog.records if r.name == ACTIVITY_LOGGER and r.levelno == logging.WARNING]
    expected = [formatter.format(r) for r in failed if "rate-limited" in r.getMessage()]
    assert expected == [
        f"WARNING {ACTIVITY_LOGGER} activity expected-errors.rate-limited attempt 1 failed "
        f"(retryable; workflow {ids['expected-errors.rate-limited']}): "
        "ApplicationError[LlmRetryable]: LLM server answered 429: slow down"
    ]
    bugs = [formatter.format(r) for r in failed if "expected-errors.buggy" in str(r.__dict__)]
    assert len(bugs) == 1
    assert "Completing activity as failed" in bugs[0]
    assert "Traceback (most recent call last)" in bugs[0]
    assert "RuntimeError: a bug in the activity" in bugs[0]
