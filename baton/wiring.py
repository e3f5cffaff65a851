"""What a deployment must provide for a spec to run, checked before any case does.

A spec names activities, LLM providers and roles that live outside it: in the
app's modules, the providers file and the roles directory. A misspelt name
(``acme.frad``, provider ``fakee``) would otherwise validate ``ok`` and surface
at run time as a business escalation in somebody's inbox. ``baton validate``,
``baton start`` and the worker all check the wiring here first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from activities import BATON_ACTIVITY_NAMES
from activities.llm.providers import load_providers
from baton.app import Activity, App, AppContext, activity_name
from baton.errors import BatonUsageError, SpecError
from baton.roles import YamlRoleDirectory
from baton.settings import Settings
from baton.spec import ProcessSpec, load_spec


@dataclass(frozen=True)
class Wiring:
    """The names a spec may use; ``None`` for a kind that is not checked."""

    roles: dict[str, int] | None = None
    activities: frozenset[str] | None = None
    providers: frozenset[str] | None = None

    def load(self, path: str | Path) -> ProcessSpec:
        """Load the spec at ``path`` and check it against these names (raises SpecError)."""
        return load_spec(path, roles=self.roles, activities=self.activities, providers=self.providers)


def app_activities(app: App, context: AppContext) -> list[Activity]:
    """The app's activities, refusing any that takes a name Baton reserves for its own.

    Raises:
        BatonUsageError: an app module does not import, or claims a name Baton reserves.
    """
    served = app.activities(context)
    reserved = sorted({activity_name(a) or "" for a in served} & BATON_ACTIVITY_NAMES)
    if reserved:
        raise BatonUsageError(f"{app.source}: activity name {reserved[0]!r} is reserved for Baton's own")
    return served


def served_names(app: App, settings: Settings) -> frozenset[str]:
    """Every activity a worker of ``app`` serves: the app's plus Baton's own (see app_activities)."""
    context = AppContext(app=app, home=settings.home, roles_file=settings.roles_file)
    names = {activity_name(a) or "" for a in app_activities(app, context)}
    context.close_now()  # a registry may have opened clients; names are all this needs
    return frozenset(names | BATON_ACTIVITY_NAMES)


def wiring_for(app: App | None, settings: Settings) -> Wiring:
    """The wiring of ``app`` (activities, providers, roles), or roles and providers only."""
    # Without an app, a missing roles file means roles are not checked (a bare spec file).
    checked = app is not None or settings.roles_file.exists()
    roles = YamlRoleDirectory(settings.roles_file).roles() if checked else None
    providers = frozenset(load_providers(settings.providers_file))
    activities = served_names(app, settings) if app is not None else None
    return Wiring(roles=roles, activities=activities, providers=providers)


def load_app_specs(app: App, wiring: Wiring) -> tuple[list[ProcessSpec], list[str]]:
    """Every spec of ``app`` that loads, and every problem of those that do not (prefixed by file)."""
    specs: list[ProcessSpec] = []
    problems: list[str] = []
    for path in app.processes().values():
        try:
            specs.append(wiring.load(path))
        except SpecError as exc:
            problems += [f"{exc.source}: {p}" for p in exc.problems]
    return specs, problems
