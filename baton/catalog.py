"""Where a command finds a process by name, and what its spec is checked against.

Loading a spec is the same for ``baton validate``, ``baton start``, the Python
client and the demo: find it in the app (or take a path), then check it and its
wiring (activities, providers, roles) so nothing half-wired ever starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from baton.app import App
from baton.errors import BatonUsageError
from baton.settings import Settings
from baton.spec import SpecSnapshot, snapshot_of
from baton.wiring import Wiring, wiring_for


@dataclass
class Catalog:
    """An app's processes (or bare spec files when there is no app) and their wiring."""

    app: App | None
    settings: Settings
    _wiring: Wiring | None = field(default=None, repr=False)

    @property
    def wiring(self) -> Wiring:
        """The names specs are checked against, computed once (imports the app's modules)."""
        if self._wiring is None:
            if self.app is not None:
                self.app.activate()
            self._wiring = wiring_for(self.app, self.settings)
        return self._wiring

    def resolve(self, process: str | Path) -> Path:
        """A process name in the app (``invoices``) or a spec file path."""
        text = str(process)
        if self.app is not None:
            return self.app.resolve_process(text)
        if text.endswith((".yaml", ".yml")) or os.sep in text:
            return Path(text)
        raise BatonUsageError(
            f"no process {text!r}: there is no app here to find it in (run in an app, "
            "pass --app PATH, or give the spec file's path)"
        )

    def load(self, process: str | Path) -> SpecSnapshot:
        """Load and check a spec by name or path, ready to start a case with."""
        path = self.resolve(process)
        return snapshot_of(self.wiring.load(path), source=str(path))
