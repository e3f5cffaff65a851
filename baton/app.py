"""An app: a team's own process, declared in one small file and run by Baton's engine.

The engine knows no business. An app names its parts in ``baton.toml`` (or the
``[tool.baton]`` table of its ``pyproject.toml``), and Baton reads exactly what
that file names; it never scans the disk::

    name = "invoices"
    specs = "processes"                    # the process specs (*.yaml), one per process
    activities = ["invoices.activities:activities"]   # modules, or module:registry
    roles = "roles.yaml"                   # who holds which role (and local logins)
    providers = "providers.yaml"           # LLM providers (default: Baton's own file)
    task_queue = "invoices"                # default: the name
    home = ".baton"                        # runtime files: audit log, traces, dev server
    seed = "invoices.activities:seed"      # optional: create/reset the app's own data

    [dev]                                  # `baton dev`, `baton demo` and baton.testing
    fake_llm = "fake-llm.yaml"             # scripted OpenAI-compatible replies, offline
    scenario = "demo.yaml"                 # the cases `baton demo` runs, with expectations

    [contract_aliases]                     # old contract module → new, so running cases
    "old.module" = "invoices.contracts"    # started before a rename still replay

An ``activities`` entry is a module (every ``@activity.defn`` function in it is
served) or ``module:function``, a registry the worker calls with an
:class:`AppContext` and which returns the activities to serve (functions or bound
methods). The app root is put on ``sys.path``, so the app's package imports with
no PYTHONPATH and no install.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import threading
import tomllib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.contracts import alias_modules, validation_problems
from baton.errors import BatonUsageError

APP_FILE = "baton.toml"
PYPROJECT = "pyproject.toml"
RESERVED_TOP_LEVEL = ("baton", "workflows", "activities", "worker")
"""Top-level names Baton itself installs; an app root holding one would shadow Baton."""

Activity = Callable[..., Any]
Closer = Callable[[], Awaitable[None] | None]


class DevConfig(BaseModel):
    """The ``[dev]`` table: what runs the app offline (dev server, demo, tests)."""

    model_config = ConfigDict(extra="forbid")
    fake_llm: str | None = Field(default=None, description="Scripted LLM replies (baton fake-llm format).")
    scenario: str | None = Field(default=None, description="Cases `baton demo` runs, with expectations.")


class AppConfig(BaseModel):
    """The app file's fields. Unknown keys are errors: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    specs: str = "processes"
    activities: list[str] = Field(default_factory=list)
    roles: str = "roles.yaml"
    providers: str | None = None
    task_queue: str | None = None
    home: str = ".baton"
    path: list[str] = Field(default_factory=lambda: ["."], description="Entries for sys.path, from root.")
    seed: str | None = None
    dev: DevConfig = DevConfig()
    contract_aliases: dict[str, str] = Field(default_factory=dict)


@dataclass
class AppContext:
    """What an app's registry function receives: where things are, and a place for clean-up.

    Attributes:
        app: the app being served.
        home: the directory for runtime files (the app's own SQLite files belong here).
        roles_file: the roles directory in use.
    """

    app: App
    home: Path
    roles_file: Path
    closers: list[Closer] = field(default_factory=list)

    def on_close(self, closer: Closer) -> None:
        """Run ``closer`` (sync or async) when the worker stops: close pools and clients."""
        self.closers.append(closer)

    def close_now(self) -> None:
        """Run the closers from code with no event loop (an async closer's coroutine is run here)."""
        for closer in reversed(self.closers):
            result = closer()
            if inspect.isawaitable(result):
                # asyncio.run refuses to nest in a running loop; a short thread has none.
                worker = threading.Thread(target=asyncio.run, args=(_awaited(result),))
                worker.start()
                worker.join()
        self.closers.clear()

    async def aclose(self) -> None:
        """Run every registered closer, last registered first."""
        for closer in reversed(self.closers):
            result = closer()
            if inspect.isawaitable(result):
                await result
        self.closers.clear()


@dataclass
class App:
    """One app: its root directory, the file that declares it, and what that file says."""

    root: Path
    source: Path
    config: AppConfig

    # -- finding and loading -------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> App:
        """The app declared at ``path``: a directory, ``baton.toml`` or a ``pyproject.toml``."""
        target = Path(path).resolve()
        if target.is_dir():
            for name in (APP_FILE, PYPROJECT):
                found = _read_app_file(target / name)
                if found is not None:
                    return cls._from(target / name, found)
            raise BatonUsageError(f"{target}: no {APP_FILE}, and no [tool.baton] in a {PYPROJECT}")
        config = _read_app_file(target)
        if config is None:
            raise BatonUsageError(f"{target}: not an app file (no [tool.baton] table)")
        return cls._from(target, config)

    @classmethod
    def find(cls, start: str | Path | None = None, *, explicit: str | Path | None = None) -> App | None:
        """The app for a command: ``explicit`` (``--app``), else ``$BATON_APP``, else the
        nearest ``baton.toml`` or ``pyproject.toml`` with ``[tool.baton]`` from ``start``
        (default: the working directory) upwards. None when there is none."""
        chosen = explicit or os.environ.get("BATON_APP")
        if chosen:
            return cls.load(chosen)
        here = Path(start or Path.cwd()).resolve()
        for directory in (here, *here.parents):
            for name in (APP_FILE, PYPROJECT):
                config = _read_app_file(directory / name)
                if config is not None:
                    return cls._from(directory / name, config)
        return None

    @classmethod
    def require(cls, start: str | Path | None = None, *, explicit: str | Path | None = None) -> App:
        """Like :meth:`find`, but a missing app is a usage error that says what to do."""
        app = cls.find(start, explicit=explicit)
        if app is None:
            raise BatonUsageError(
                f"no Baton app here: no {APP_FILE} (or [tool.baton] in {PYPROJECT}) in "
                f"{Path(start or Path.cwd()).resolve()} or above. Run `baton init NAME` to write one, "
                "or pass --app PATH (or set BATON_APP)."
            )
        return app

    @classmethod
    def _from(cls, source: Path, data: dict[str, Any]) -> App:
        try:
            config = AppConfig.model_validate(data)
        except ValidationError as exc:
            problems = "\n".join(f"  {p}" for p in validation_problems(exc))
            raise BatonUsageError(f"{source}: the app file has problems:\n{problems}") from None
        return cls(root=source.parent, source=source, config=config)

    # -- where things are ----------------------------------------------------

    @property
    def name(self) -> str:
        """The app's name."""
        return self.config.name

    @property
    def specs_dir(self) -> Path:
        """Directory of the app's process specs."""
        return self.root / self.config.specs

    @property
    def roles_file(self) -> Path:
        """The app's roles directory."""
        return self.root / self.config.roles

    @property
    def providers_file(self) -> Path | None:
        """The app's LLM providers file, if it declares one."""
        return self.root / self.config.providers if self.config.providers else None

    @property
    def home(self) -> Path:
        """Runtime files: audit log, traces, the dev server's database, the app's own data."""
        return self.root / self.config.home

    @property
    def task_queue(self) -> str:
        """The task queue the app's worker serves."""
        return self.config.task_queue or self.config.name

    def dev_file(self, field_name: str) -> Path | None:
        """A ``[dev]`` file (``fake_llm``, ``scenario``) resolved against the root."""
        value = getattr(self.config.dev, field_name)
        return self.root / value if value else None

    def processes(self) -> dict[str, Path]:
        """Process name (the spec file's stem) → spec file, sorted by name."""
        if not self.specs_dir.is_dir():
            raise BatonUsageError(f"{self.source}: specs directory {self.specs_dir} does not exist")
        found = sorted([*self.specs_dir.glob("*.yaml"), *self.specs_dir.glob("*.yml")])
        return {p.stem: p for p in found}

    def resolve_process(self, name_or_path: str) -> Path:
        """``invoices`` → the app's ``processes/invoices.yaml``; a path stays a path."""
        if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
            return Path(name_or_path)
        known = self.processes()
        if name_or_path not in known:
            listing = ", ".join(known) or "none"
            raise BatonUsageError(
                f"no process {name_or_path!r} in app {self.name!r} ({self.specs_dir}); known: {listing}"
            )
        return known[name_or_path]

    # -- importing -----------------------------------------------------------

    def activate(self) -> None:
        """Make the app importable (its root on ``sys.path``) and install its contract aliases.

        Idempotent. Refuses an app whose root would shadow one of Baton's own
        top-level packages, which would break Baton in confusing ways.
        """
        for entry in self.config.path:
            directory = (self.root / entry).resolve()
            clash = [n for n in RESERVED_TOP_LEVEL if _holds_module(directory, n)]
            if clash and not _is_baton_source(directory):
                raise BatonUsageError(
                    f"{self.source}: {directory} holds {', '.join(clash)}, which would shadow "
                    "Baton's own modules of that name; move them into your app's package"
                )
            if str(directory) not in sys.path:
                sys.path.insert(0, str(directory))
        importlib.invalidate_caches()
        alias_modules(self.config.contract_aliases)

    def modules(self) -> list[str]:
        """Modules the app's activities come from (for the sandbox and error messages)."""
        return [entry.partition(":")[0] for entry in self.config.activities]

    def activities(self, context: AppContext) -> list[Activity]:
        """Import every named module and collect the activities it serves.

        Raises:
            BatonUsageError: a module does not import, a registry is not callable or
                returns something that is not an activity, or two activities share a name.
        """
        self.activate()
        served: dict[str, Activity] = {}
        for entry in self.config.activities:
            for act in self._entry_activities(entry, context):
                name = activity_name(act)
                if name is None:
                    raise BatonUsageError(f"{self.source}: {entry} returned {act!r}, not an @activity.defn")
                if name in served and served[name] is not act:
                    raise BatonUsageError(f"{self.source}: two activities are named {name!r} ({entry})")
                served[name] = act
        return list(served.values())

    def _entry_activities(self, entry: str, context: AppContext) -> Iterable[Activity]:
        module_name, _, attr = entry.partition(":")
        module = _import(module_name, self.source)
        if not attr:
            return [v for v in vars(module).values() if activity_name(v) is not None]
        registry = getattr(module, attr, None)
        if not callable(registry):
            raise BatonUsageError(f"{self.source}: activities entry {entry!r}: {module_name} has no {attr}()")
        takes_context = bool(inspect.signature(registry).parameters)
        found = registry(context) if takes_context else registry()
        return list(found)

    def seed(self, context: AppContext, *, reset: bool) -> str | None:
        """Run the app's ``seed`` function (create, or with ``reset`` recreate, its data)."""
        if not self.config.seed:
            return None
        self.activate()
        module_name, _, attr = self.config.seed.partition(":")
        function = getattr(_import(module_name, self.source), attr or "seed", None)
        if not callable(function):
            raise BatonUsageError(f"{self.source}: seed {self.config.seed!r} is not a function")
        return str(function(context, reset=reset))


async def _awaited(result: Awaitable[None]) -> None:
    await result


def activity_name(candidate: object) -> str | None:
    """The Temporal activity name of a decorated function or bound method, else None."""
    definition = getattr(candidate, "__temporal_activity_definition", None)
    name = getattr(definition, "name", None)
    return name if isinstance(name, str) else None


def _import(module_name: str, source: Path) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise BatonUsageError(f"{source}: cannot import {module_name!r}: {exc}") from None


def _read_app_file(path: Path) -> dict[str, Any] | None:
    """The app table of ``path`` (all of baton.toml; pyproject's [tool.baton]), else None."""
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BatonUsageError(f"{path}: {exc}") from None
    if path.name == PYPROJECT:
        table = data.get("tool", {}).get("baton")
        return table if isinstance(table, dict) else None
    return data


def _holds_module(directory: Path, name: str) -> bool:
    return (directory / name / "__init__.py").is_file() or (directory / f"{name}.py").is_file()


def _is_baton_source(directory: Path) -> bool:
    """True for Baton's own checkout (its top-level packages are Baton's, not an app's)."""
    return (directory / "baton" / "app.py").resolve() == Path(__file__).resolve()
