"""The app model: finding an app, what its file may say, serving its activities, wiring checks."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

import baton
import baton.testing
from baton.app import App, AppContext, activity_name
from baton.contracts import resolve_contract
from baton.errors import BatonUsageError
from baton.scaffold import write_app
from baton.settings import Settings
from baton.wiring import served_names, wiring_for
from tests.conftest import REFUNDS_APP

BATON = str(Path(sys.executable).parent / "baton")


def new_app(tmp_path: Path) -> App:
    """A fresh `baton init` app under a unique name (its package is imported by this process)."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    return App.load(write_app(tmp_path / name, name=name))


async def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    proc = await asyncio.create_subprocess_exec(
        BATON, *args, cwd=cwd, env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_the_exported_names_are_the_documented_api() -> None:
    assert sorted(baton.__all__) == [
        "ActionInput", "ActionResult", "AgentInput", "AppContext", "ApprovalRecord", "BatonError",
        "BatonRuntimeError", "BatonUsageError", "CaseInputError", "Feedback", "SpecError",
    ]  # fmt: skip
    assert sorted(baton.testing.__all__) == [
        "AppHarness",
        "DecisionRefusedError",
        "serve_app",
        "start_dev_server",
    ]
    for name in [*baton.__all__]:
        assert getattr(baton, name).__doc__, f"baton.{name} has no docstring"


def test_an_app_is_found_from_any_directory_below_it_or_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = new_app(tmp_path)
    deep = app.root / "processes" / "prompts"
    found = App.find(deep)
    assert found is not None
    assert found.root == app.root
    assert found.name == app.name
    assert App.find(tmp_path) is None
    with pytest.raises(BatonUsageError, match=r"no Baton app here: .* Run `baton init NAME`"):
        App.require(tmp_path)
    assert App.find(tmp_path, explicit=app.root / "baton.toml").root == app.root  # type: ignore[union-attr]
    monkeypatch.setenv("BATON_APP", str(app.root))
    assert App.find(tmp_path).root == app.root  # type: ignore[union-attr]


def test_an_app_may_live_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.baton]\nname = "x"\ntask_queue = "xq"\n'
    )
    (tmp_path / "sub").mkdir()
    app = App.find(tmp_path / "sub")
    assert app is not None
    assert (app.name, app.task_queue, app.source.name) == ("x", "xq", "pyproject.toml")
    assert Settings.for_app(app).task_queue == "xq"


def test_a_bad_app_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "baton.toml").write_text('name = "x"\nactivites = ["x.y"]\n')
    with pytest.raises(
        BatonUsageError, match=r"baton.toml: the app file has problems:\n  activites: Extra inputs"
    ):
        App.load(tmp_path)
    (tmp_path / "baton.toml").write_text('name = "x"\nactivities = "x.y"\n')
    with pytest.raises(BatonUsageError, match=r"activities: Input should be a valid list"):
        App.load(tmp_path)
    (tmp_path / "baton.toml").write_text('name = "x\n')
    with pytest.raises(BatonUsageError, match=r"baton.toml: .*line 1"):
        App.load(tmp_path)


def test_an_app_root_that_would_shadow_baton_is_refused(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    (app.root / "activities").mkdir()
    (app.root / "activities" / "__init__.py").write_text("")
    with pytest.raises(BatonUsageError, match=r"holds activities, which would shadow Baton's own modules"):
        app.activate()


def test_activities_come_from_modules_and_registries(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    package = app.config.activities[0].partition(".")[0]
    context = AppContext(app=app, home=tmp_path / "home", roles_file=app.roles_file)
    from_registry = {activity_name(a) for a in app.activities(context)}
    assert from_registry == {f"{package}.{n}" for n in ("intake", "drafter", "reviewer", "record")}
    # A bare module serves every @activity.defn function in it (not the bound method).
    bare = App(app.root, app.source, app.config.model_copy(update={"activities": [f"{package}.activities"]}))
    assert {activity_name(a) for a in bare.activities(context)} == from_registry - {f"{package}.record"}
    names = served_names(app, Settings.for_app(app))
    assert {"baton.llm_agent", "baton.audit_append", "baton.role_members", "baton.notify"} <= names


def test_broken_activity_entries_are_named(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    package = app.config.activities[0].partition(".")[0]
    context = AppContext(app=app, home=tmp_path, roles_file=app.roles_file)

    def with_entries(*entries: str) -> App:
        return App(app.root, app.source, app.config.model_copy(update={"activities": list(entries)}))

    with pytest.raises(BatonUsageError, match=rf"cannot import '{package}.nope'"):
        with_entries(f"{package}.nope").activities(context)
    with pytest.raises(BatonUsageError, match=rf"'{package}.activities:nothing': .* has no nothing\(\)"):
        with_entries(f"{package}.activities:nothing").activities(context)
    (app.root / package / "extra.py").write_text(
        "from temporalio import activity\n\n\n"
        "@activity.defn(name='baton.notify')\nasync def notify() -> None: ...\n\n\n"
        "def junk(context):\n    return [print]\n"
    )
    with pytest.raises(BatonUsageError, match=r"returned <built-in function print>, not an @activity\.defn"):
        with_entries(f"{package}.extra:junk").activities(context)
    with pytest.raises(BatonUsageError, match=r"'baton\.notify' is reserved for Baton's own"):
        served_names(with_entries(f"{package}.extra"), Settings.for_app(app))


async def test_wiring_mistakes_fail_validate_and_stop_the_worker(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    package = app.config.activities[0].partition(".")[0]
    [spec] = app.processes().values()
    text = spec.read_text()
    text = text.replace(f"activity: {package}.record", "activity: acme.frad")
    spec.write_text(text.replace("provider: openai", "provider: fakee"))
    code, out, err = await cli("validate", cwd=app.root / "processes")
    assert code == 2, (out, err)
    assert (
        "agents.explainer.provider (line 25): unknown LLM provider 'fakee' (not in the providers file)" in err
    )
    assert "action.activity (line 78): unknown activity 'acme.frad' (no module of the app provides it)" in err
    code, out, err = await cli("start", app.name, "--case", "cases/small.json", cwd=app.root)
    assert code == 2
    assert "unknown activity 'acme.frad'" in err
    assert "Traceback" not in err
    code, out, err = await cli("worker", cwd=app.root, env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert code == 2, (out, err)
    assert f"the worker for app {app.name!r} will not start:" in err
    assert "unknown activity 'acme.frad'" in err
    assert "unknown LLM provider 'fakee'" in err


async def test_without_an_app_a_process_name_needs_a_path(tmp_path: Path) -> None:
    code, _, err = await cli("validate", "refund-request", cwd=tmp_path)
    assert code == 2
    assert "no process 'refund-request': there is no app here to find it in" in err
    code, _, err = await cli("worker", cwd=tmp_path)
    assert code == 2
    assert "no Baton app here" in err


def test_renamed_contract_modules_resolve_through_the_apps_aliases() -> None:
    from refunds.contracts import RefundRequest

    assert REFUNDS_APP.config.contract_aliases == {"processes.contracts.refunds": "refunds.contracts"}
    assert resolve_contract("processes.contracts.refunds:RefundRequest") is RefundRequest


def test_wiring_of_the_refund_app(tmp_path: Path) -> None:
    wiring = wiring_for(REFUNDS_APP, Settings(home=tmp_path, roles_file=REFUNDS_APP.roles_file))
    assert wiring.activities is not None
    assert "refunds.issue_refund" in wiring.activities
    assert wiring.providers == frozenset({"openai", "ollama"})


def test_init_refuses_bad_names_and_busy_directories(tmp_path: Path) -> None:
    with pytest.raises(BatonUsageError, match="use lower-case letters"):
        write_app(tmp_path / "x", name="Bad Name")
    with pytest.raises(BatonUsageError, match="would shadow a module"):
        write_app(tmp_path / "x", name="activities")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(BatonUsageError, match="exists and is not empty: nothing written"):
        write_app(tmp_path / "busy", name="fine")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
