"""Input from outside, treated as an attack: spec files (alias bombs, prompt paths out of
the spec's folder), text printed by the CLI (forged lines, terminal escapes), and
requests to the codec server (malformed bodies, tampered ciphertext, wrong methods,
tokens without their scheme). Each is refused early, in one clear line."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from baton.cli import format_event, format_pending, format_status
from baton.client import PendingCase
from baton.codec import AesGcmCodec
from baton.errors import SpecError
from baton.messages import AuditEvent, AuditKind, Awaiting, CaseStatus, Outcome
from baton.safetext import printable
from baton.spec import load_spec, load_spec_text
from baton.spec.loader import MAX_DEPTH, MAX_NODES, MAX_PROMPT_BYTES, MAX_SPEC_BYTES
from baton.traces import case_tree
from tests.conftest import REFUNDS_APP, refund_spec, serving_codec

BATON = str(Path(sys.executable).parent / "baton")
LLM_SPEC = refund_spec("refund-request-llm")


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 (387 million) strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def problems(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, source="attack.yaml", base_dir=base_dir)
    return caught.value.problems


# --- 7. spec files ------------------------------------------------------------------------


def run_limited(tmp_path: Path, *argv: str) -> tuple[int, str, str, int, float]:
    """Run ``argv`` under a 1 GiB address-space limit (the old loader took 18 GB on the bomb).

    Returns:
        exit code, stdout, stderr, the child's own peak RSS in KiB, seconds taken.
    """
    limit = 1 << 30
    set_limit = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    env = {**os.environ, "BATON_HOME": str(tmp_path / "home")}
    with (tmp_path / "out").open("w+") as out, (tmp_path / "err").open("w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", set_limit, *argv], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, not all children's
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss, took


def test_the_alias_bomb_is_refused_by_validate_at_once_in_bounded_memory(tmp_path: Path) -> None:
    """``baton validate`` on the bomb: refused in one pass, every alias named by its line."""
    text = billion_laughs()
    assert len(text.encode()) < 400
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text)
    code, _, stderr, peak_kib, took = run_limited(
        tmp_path, BATON, "--app", str(REFUNDS_APP.root), "validate", str(bomb)
    )
    print(f"bomb: {len(text.encode())} bytes, {took:.2f} s, child peak RSS {peak_kib / 1024:.0f} MiB")
    assert code == 2, stderr
    assert stderr.splitlines() == [
        f"{bomb}: line {n}: YAML aliases (*{prev}) are not allowed in a spec: write the value out"
        for n, prev in zip(range(2, 10), "abcdefgh", strict=True)
    ]
    # Bounded memory is enforced by the 1 GiB address-space limit (an expansion would die
    # of MemoryError, not exit 2 naming each alias); the peak is printed, not asserted.


def test_the_alias_bomb_never_expands_in_the_loader(tmp_path: Path) -> None:
    """What the loader itself allocates on the bomb (tracemalloc), still behind the limit."""
    script = f"""
import json, tracemalloc
from baton.errors import SpecError
from baton.spec import load_spec_text
tracemalloc.start()
try:
    load_spec_text({billion_laughs()!r})
except SpecError as exc:
    print(json.dumps({{"problems": exc.problems, "peak": tracemalloc.get_traced_memory()[1]}}))
"""
    code, stdout, stderr, _, _ = run_limited(tmp_path, sys.executable, "-c", script)
    assert code == 0, stderr
    found = json.loads(stdout)
    print(f"bomb in the loader: peak {found['peak'] / 1024:.0f} KiB traced")
    assert len(found["problems"]) == 8
    assert found["peak"] < 4 << 20


def test_every_alias_is_a_problem_with_its_line_even_a_merge_key() -> None:
    text = "base: &base {a: 1}\nprocess: p\nother:\n  <<: *base\nmore: *base\n"
    assert problems(text) == [
        "line 4: YAML aliases (*base) are not allowed in a spec: write the value out",
        "line 5: YAML aliases (*base) are not allowed in a spec: write the value out",
    ]
    assert problems("x: *nowhere\n") == [
        "line 1: YAML aliases (*nowhere) are not allowed in a spec: write the value out"
    ]


def test_size_nesting_and_value_count_are_bounded() -> None:
    too_big = "#" + "x" * MAX_SPEC_BYTES + "\n"
    assert problems(too_big) == ["(document): larger than 1024 KiB, the most a spec may be"]
    nested = "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    assert problems(nested) == [f"line 1: nested deeper than {MAX_DEPTH} levels, the most a spec may be"]
    very_deep = "x: " + "[" * 100_000 + "]" * 100_000  # once a RecursionError (a crash)
    assert problems(very_deep) == [f"line 1: nested deeper than {MAX_DEPTH} levels, the most a spec may be"]
    wide = "x:\n" + "- 0\n" * (MAX_NODES + 1)
    assert problems(wide) == [
        f"line {MAX_NODES - 1}: more than {MAX_NODES} YAML values, the most a spec may hold"
    ]


def test_an_oversized_or_binary_spec_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(SpecError, match="larger than 1024 KiB"):
        load_spec(big)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"process: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"cannot read: not UTF-8 text \(byte 9\)"):
        load_spec(binary)


def test_a_control_character_in_a_spec_is_one_line_with_its_line_number() -> None:
    assert problems("process: p\nversion: \x1b[31m1\n") == [
        "line 2: YAML syntax error: character #x001b: special characters are not allowed"
    ]


def spec_folder(tmp_path: Path) -> Path:
    """A copy of the LLM refund spec and its prompts, in a folder of its own."""
    folder = tmp_path / "app" / "processes"
    shutil.copytree(LLM_SPEC.parent / "prompts", folder / "prompts")
    shutil.copy(LLM_SPEC, folder / LLM_SPEC.name)
    return folder


def prompt_problems(folder: Path, prompt: str) -> list[str]:
    text = (folder / LLM_SPEC.name).read_text().replace("prompt: prompts/drafter.md", f"prompt: {prompt}")
    try:
        load_spec_text(text, source="attack.yaml", base_dir=folder)
    except SpecError as exc:
        return [p for p in exc.problems if p.startswith("agents.drafter.prompt")]
    return []


def test_prompt_paths_stay_in_the_spec_folder(tmp_path: Path) -> None:
    folder = spec_folder(tmp_path)
    assert load_spec(folder / LLM_SPEC.name).agents["drafter"].prompt_text  # prompts/… still loads
    root = folder.resolve()
    line = (folder / LLM_SPEC.name).read_text().splitlines().index("    prompt: prompts/drafter.md") + 1
    assert prompt_problems(folder, "../../../../etc/passwd") == [
        f"agents.drafter.prompt (line {line}): prompt path '../../../../etc/passwd' leads outside "
        f"the spec's folder ({root}): prompt files must live in it or below it"
    ]
    assert prompt_problems(folder, "/etc/passwd") == [
        f"agents.drafter.prompt (line {line}): prompt path '/etc/passwd' is absolute: "
        "give it relative to the spec's folder"
    ]
    assert prompt_problems(folder, "prompts/../../secret.md")[0].endswith(
        "prompt files must live in it or below it"
    )


def test_a_symlink_out_of_the_spec_folder_is_refused(tmp_path: Path) -> None:
    folder = spec_folder(tmp_path)
    secret = tmp_path / "secret.md"
    secret.write_text("the database password is hunter2\n")
    (folder / "prompts" / "link.md").symlink_to(secret)
    (found,) = prompt_problems(folder, "prompts/link.md")
    assert "prompt path 'prompts/link.md' leads outside the spec's folder" in found
    (folder / "prompts" / "inside.md").symlink_to(folder / "prompts" / "drafter.md")
    assert prompt_problems(folder, "prompts/inside.md") == []  # a link within the folder is fine


def test_prompt_files_are_bounded_and_must_be_text(tmp_path: Path) -> None:
    folder = spec_folder(tmp_path)
    (folder / "prompts" / "big.md").write_text("x" * (MAX_PROMPT_BYTES + 1))
    (found,) = prompt_problems(folder, "prompts/big.md")
    assert found.endswith(
        f"prompt {folder / 'prompts' / 'big.md'} is larger than 64 KiB, the most a prompt may be"
    )
    (folder / "prompts" / "bin.md").write_bytes(b"ok \xff")
    (found,) = prompt_problems(folder, "prompts/bin.md")
    assert found.endswith("not UTF-8 text (byte 3)")
    (found,) = prompt_problems(folder, "prompts")
    assert found.endswith("not a regular file")


# --- 8. forged lines in CLI output -------------------------------------------------------

AT = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
FORGED_ACTOR = "mallory\n 12 2025-01-02T03:04:05.678+00:00 approved           [alice] approved by alice"
FORGED_DETAIL = (
    "ok\r\n 13 2025-01-02T03:04:05.678+00:00 action             refund issued\x1b[2K"
    "\u2028 14 case_closed\u202eevil\x85\x7f\u200b\ud800"
)


def test_printable_escapes_controls_and_invisible_characters_only() -> None:
    assert printable("alice") == "alice"
    assert printable("Zoë 日本 🎉 C:\\Users\\x  tab") == "Zoë 日本 🎉 C:\\Users\\x  tab"
    assert printable("a\nb\rc\td\x00e\x1b[31mf\x7fg\x85h") == "a\\nb\\rc\\td\\x00e\\x1b[31mf\\x7fg\\x85h"
    assert printable("\u2028\u2029\u202e\u2066\u200b\ufeff\ud800\U000e0001") == (
        "\\u2028\\u2029\\u202e\\u2066\\u200b\\ufeff\\ud800\\U000e0001"
    )
    assert printable(42) == "42"
    every = "".join(map(chr, range(0x110000)))
    shown = printable(every)
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"} for c in shown)


def test_an_audit_line_cannot_be_forged_by_a_name_or_a_comment() -> None:
    event = AuditEvent(seq=11, at=AT, kind=AuditKind.REFUSED, detail=FORGED_DETAIL, actor=FORGED_ACTOR)
    line = format_event(event)
    assert line == (
        " 11 2025-01-02T03:04:05.678+00:00 refused           "
        " [mallory\\n 12 2025-01-02T03:04:05.678+00:00 approved           [alice] approved by alice]"
        " ok\\r\\n 13 2025-01-02T03:04:05.678+00:00 action             refund issued\\x1b[2K"
        "\\u2028 14 case_closed\\u202eevil\\x85\\x7f\\u200b\\ud800"
    )
    assert len(line.splitlines()) == 1
    assert line.isprintable()


def test_status_and_inbox_lines_escape_what_came_from_outside() -> None:
    status = CaseStatus(
        case_id="case-1\n  outcome: actioned",
        process="refund\x1b]0;pwned\x07",
        spec_version=1,
        spec_sha256="0123456789abcdef",
        stage="awaiting\rstage",
        path=["intake", "drafter\napproved"],
        awaiting=Awaiting(
            ladder="std\u202e", rung=1, rungs=2, role="lead\n", deadline=AT, purpose="approve\n  outcome: x"
        ),
        outcome=Outcome.REJECTED,
        reason="nobody\n  outcome: actioned",
    )
    lines = format_status(status)
    assert lines == [
        "case-1\\n  outcome: actioned  refund\\x1b]0;pwned\\x07 v1  spec 0123456789ab",
        "  stage:   awaiting\\rstage",
        "  path:    intake → drafter\\napproved",
        "  waiting: lead\\n (ladder std\\u202e, rung 1/2) until 2025-01-02T03:04:05.678000+00:00",
        "           approve\\n  outcome: x",
        "  outcome: rejected: nobody\\n  outcome: actioned",
    ]
    assert all(line.isprintable() for line in lines)
    pending = PendingCase(
        case_id="c\n2", process="p", stage="s", role="r\x1b", started=AT, deadline=None, amount=1.5,
        summary="\u202esummary\n",
    )  # fmt: skip
    line = format_pending(pending)
    assert line.startswith("c\\n2  r\\x1b ")
    assert line.endswith("due held  \\u202esummary\\n")
    assert line.isprintable()


def test_trace_lines_escape_span_names_and_attributes(tmp_path: Path) -> None:
    span = {
        "trace_id": "t1", "span_id": "s1", "parent_id": None, "name": "approval\n  forged span",
        "start": 0, "end": 1_000_000, "status": "OK",
        "attributes": {"baton.case_id": "c1", "baton.approver": "alice\x1b[2K\nbob"},
    }  # fmt: skip
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps(span) + "\n")
    assert case_tree(path, "c1") == ["approval\\n  forged span  1.0 ms  approver=alice\\x1b[2K\\nbob"]


# --- 9. the codec server -----------------------------------------------------------------

TOKEN = "viewer-token-123"
ORIGIN = "http://localhost:8233"
CODEC = AesGcmCodec({"k1": os.urandom(32)}, "k1")


@pytest.fixture
async def codec_server() -> AsyncIterator[str]:
    async with serving_codec(CODEC, token=TOKEN, origin=ORIGIN) as url:
        yield url


AUTH = {"Authorization": f"Bearer {TOKEN}", "Origin": ORIGIN}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sealed_body(tamper: bool = False) -> str:
    (payload,) = await CODEC.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'{"x": 1}')])
    if tamper:
        payload.data = payload.data[:20] + bytes([payload.data[20] ^ 1]) + payload.data[21:]
    return json_format.MessageToJson(Payloads(payloads=[payload]))


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "malformed JSON: Expecting property name enclosed in double quotes"),
    (b"\xff\xfe{}", "malformed JSON: the body is not UTF-8"),
    (b"[" * 100_000, "malformed JSON: nested too deeply"),
    (b"", "malformed JSON: Expecting value: line 1 column 1 (char 0)"),
    (b"null", 'expected a JSON object {"payloads": [{"metadata": {...}, "data": "<base64>"}, ...]}'),
    (b"[]", "expected a JSON object"),
    (b'{"payloads": "x"}', "expected a JSON object"),
    (b'{"payloads": null}', "expected a JSON object"),
    (b'{"payloads": [], "other": 1}', "unknown field 'other': expected a JSON object"),
    (b'{"payloads": [1]}', "payloads[0] is not an object"),
    (b'{"payloads": [{"metadata": 5}]}', "payloads[0].metadata is not an object of base64 strings"),
    (b'{"payloads": [{"meta\\u0000": 5}]}', "payloads[0] has unknown field 'meta\\x00'"),
    (b'{"payloads": [{"data": "!!!notbase64"}]}', "payloads[0].data is not valid base64"),
    (b'{"payloads": [{"data": "QUJDRA="}]}', "payloads[0].data is not valid base64"),
    (b'{"payloads": [{"data": 5}]}', "payloads[0].data is not a base64 string"),
    (b'{"payloads": [{"metadata": {"encoding": "%%%"}}]}', "payloads[0].metadata['encoding'] is not valid base64"),
]  # fmt: skip


async def test_codec_server_refuses_bad_requests_with_a_status_and_one_line(
    codec_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    short = json.dumps(
        {"payloads": [{"metadata": {"encoding": b64(b"binary/encrypted"), "encryption-key-id": b64(b"k1")},
                       "data": b64(b"abc")}]}
    )  # fmt: skip
    refused: list[tuple[str, str, bytes | str, dict[str, str], int, str]] = [
        ("GET", "/decode", b"", AUTH, 405, "method GET not allowed: POST the payloads"),
        ("PUT", "/encode", b"{}", AUTH, 405, "method PUT not allowed: POST the payloads"),
        ("POST", "/decode", b"{}", {"Origin": ORIGIN}, 401, "unauthorised"),
        ("POST", "/decode", b"{}", {"Authorization": TOKEN}, 401, "unauthorised"),  # no scheme
        ("POST", "/decode", b"{}", {"Authorization": f"Basic {TOKEN}"}, 401, "unauthorised"),
        ("POST", "/decode", b"{}", {"Authorization": "Bearer wrong"}, 401, "unauthorised"),
        ("POST", "/decode", b"{}", {"Authorization": "Bearer"}, 401, "unauthorised"),
        ("POST", "/decode", await sealed_body(tamper=True), AUTH, 400,
         "cannot decode: codec key 'k1' does not decrypt this payload"),
        ("POST", "/decode", short, AUTH, 400, "cannot decode: "),
        *(("POST", "/decode", body, AUTH, 400, reason) for body, reason in BAD_BODIES),
        *(("POST", "/encode", body, AUTH, 400, reason) for body, reason in BAD_BODIES[:3]),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=codec_server) as http:
        for method, path, body, headers, status, reason in refused:
            caplog.clear()
            answer = await http.request(method, path, content=body, headers=headers)
            what = f"{method} {path} {body[:60]!r} {headers}"
            assert answer.status_code == status, (what, answer.text)
            error = answer.json()["error"]
            assert error.startswith(reason), (what, error)
            assert "\n" not in error
            assert "Traceback" not in answer.text
            if status == 405:
                assert answer.headers["Allow"] == "POST, OPTIONS"
            if "Origin" in headers:
                assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
            records = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert [r.name for r in records] == ["baton.codecserver"], (what, records)
            assert records[0].exc_info is None
            assert "\n" not in records[0].getMessage()
            assert records[0].getMessage().endswith(f"refused ({status}): {error}")


async def test_codec_server_still_serves_the_ui(codec_server: str) -> None:
    async with httpx.AsyncClient(base_url=codec_server) as http:
        preflight = await http.options("/decode", headers={"Origin": ORIGIN})
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        plain = json_format.MessageToJson(
            Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'{"x": 1}')])
        )
        for scheme in ("Bearer", "bearer", "BEARER"):  # RFC 7235: the scheme is case-insensitive
            encoded = await http.post(
                "/encode", content=plain, headers={"Authorization": f"{scheme} {TOKEN}"}
            )
            assert encoded.status_code == 200, encoded.text
        decoded = await http.post("/decode", content=encoded.text, headers=AUTH)
        assert decoded.status_code == 200, decoded.text
        assert json_format.Parse(decoded.text, Payloads()).payloads[0].data == b'{"x": 1}'
        none = await http.post("/decode", content='{"payloads": []}', headers=AUTH)
        assert (none.status_code, none.json()) == (200, {})
