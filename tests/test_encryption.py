"""Encryption: no case data readable in the Temporal history; the codec server decrypts
only for a caller with the token; keys rotate without losing old payloads."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from baton.codec import AesGcmCodec, load_codec, with_codec
from baton.errors import BatonUsageError
from baton.messages import Outcome
from baton.scenario import wait_for_approval
from tests.conftest import Running, refund, serving_codec

KEY_1, KEY_2 = os.urandom(32), os.urandom(32)
TOKEN = "viewer-token-123"
ORIGIN = "http://localhost:8233"


def keys_env(*pairs: tuple[str, bytes]) -> dict[str, str]:
    return {"BATON_CODEC_KEYS": ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in pairs)}


@pytest.fixture
def encrypted(env: WorkflowEnvironment, on_dev: Running) -> Running:
    codec = load_codec(keys_env(("k1", KEY_1)))
    config = env.client.config()
    config["data_converter"] = with_codec(config["data_converter"], codec)
    return Running(Client(**config), on_dev.settings, on_dev.refunds, on_dev.llm)


@pytest.fixture
async def codec_server() -> AsyncIterator[str]:
    codec = load_codec(keys_env(("k2", KEY_2), ("k1", KEY_1)))  # rotated: k2 current, k1 still readable
    assert codec is not None
    async with serving_codec(codec, token=TOKEN, origin=ORIGIN) as url:
        yield url


async def test_history_holds_no_plaintext_and_the_codec_server_decrypts_for_the_token(
    encrypted: Running, codec_server: str
) -> None:
    async with encrypted.worker():
        case_id = await encrypted.baton.start_case(
            "refund-request", refund("ORD-1009", "CUS-001", 45.0, "not_as_described")
        )
        result = await encrypted.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    history = await encrypted.client.get_workflow_handle(case_id).fetch_history()
    text = history.to_json()
    for plaintext in ("CUS-001", "ORD-1009", "not_as_described", "RefundProposal", "support-lead"):
        assert plaintext not in text
    scheduled = next(e for e in history.events if e.HasField("workflow_execution_started_event_attributes"))
    payload = scheduled.workflow_execution_started_event_attributes.input.payloads[0]
    assert payload.metadata["encoding"] == b"binary/encrypted"
    assert payload.metadata["encryption-key-id"] == b"k1"

    body = json_format.MessageToJson(Payloads(payloads=[payload]))
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{codec_server}/decode", content=body, headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
        decoded = await http.post(
            f"{codec_server}/decode",
            content=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Origin": ORIGIN},
        )
        preflight = await http.options(f"{codec_server}/decode", headers={"Origin": ORIGIN})
    assert decoded.status_code == 200
    plain = json_format.Parse(decoded.text, Payloads()).payloads[0]
    assert b"CUS-001" in plain.data  # an old-key (k1) payload still decrypts after rotation
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


async def test_rotation_keeps_old_payloads_readable_and_unknown_keys_fail_clearly() -> None:
    old = AesGcmCodec({"k1": KEY_1}, "k1")
    new = AesGcmCodec({"k2": KEY_2, "k1": KEY_1}, "k2")
    sealed_old = await old.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"a":1}')])
    assert (await new.decode(sealed_old))[0].data == b'{"a":1}'
    sealed_new = await new.encode([Payload(data=b"x")])
    assert sealed_new[0].metadata["encryption-key-id"] == b"k2"
    with pytest.raises(ValueError, match="no codec key 'k2'"):
        await old.decode(sealed_new)


def test_bad_key_configuration_is_a_clear_error() -> None:
    with pytest.raises(BatonUsageError, match="must be 16, 24 or 32 bytes"):
        load_codec(keys_env(("k1", b"short")))
    with pytest.raises(BatonUsageError, match="id:base64key"):
        load_codec({"BATON_CODEC_KEYS": "no-colon-here"})
    assert load_codec({}) is None


async def test_failure_messages_are_encrypted_too(encrypted: Running) -> None:
    async with encrypted.worker():
        baton = encrypted.baton
        first = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        second = await baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        for case_id in (first, second):  # both pass intake before either refunds
            await wait_for_approval(baton, case_id)
        await baton.approve(first, approver="alice")
        await baton.approve(second, approver="alice")
        results = [await baton.result(first), await baton.result(second)]
    failed = next(r for r in results if r.outcome == Outcome.ACTION_FAILED)
    assert "would exceed what is left" in failed.reason  # readable to a client with the key...
    history = await encrypted.client.get_workflow_handle(failed.case_id).fetch_history()
    assert "would exceed" not in history.to_json()  # ...but not in the stored history
    assert "Encoded failure" in history.to_json()  # the failure converter encodes message and trace


async def test_the_temporal_cli_decides_on_an_encrypted_case_through_the_codec_server(
    encrypted: Running,
) -> None:
    from tests.test_bound_decisions import temporal_cli

    codec = load_codec(keys_env(("k1", KEY_1)))  # the workers' keys: what the CLI sends, they can open
    assert codec is not None
    async with serving_codec(codec, token=TOKEN, origin=ORIGIN) as codec_server, encrypted.worker():
        case_id = await encrypted.baton.start_case("refund-request", refund("ORD-1002", "CUS-002", 249.0))
        waiting = await wait_for_approval(encrypted.baton, case_id)
        assert waiting.awaiting is not None
        assert waiting.awaiting.proposal is not None
        decision = f'{{"verdict": "approve", "approver": "alice", "proposal": "{waiting.awaiting.proposal}"}}'
        code, out = await temporal_cli(
            encrypted, "workflow", "update", "execute", "--workflow-id", case_id, "--name", "decide",
            "--input", decision, "--codec-endpoint", codec_server, "--codec-auth", f"Bearer {TOKEN}",
        )  # fmt: skip
        assert code == 0, out
        assert "approved by alice" in out  # the receipt, decrypted for the CLI by the codec server
        result = await encrypted.baton.result(case_id)
    assert result.outcome == Outcome.ACTIONED
    history = await encrypted.client.get_workflow_handle(case_id).fetch_history()
    assert '"approver": "alice"' not in history.to_json()  # the decision went in encrypted
