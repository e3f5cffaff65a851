"""``baton init NAME``: write a small app that works the moment it is written.

The templates in ``baton/scaffold/`` are a complete app (a process spec, contracts,
two Python agents, an LLM agent with its prompt and scripted replies, a reviewer, an
idempotent action on its own SQLite table, roles, example cases, a README and tests
that run the cases on a real Temporal dev server). Writing one is substitution only:
``{{name}}``, ``{{package}}`` and ``{{process}}`` in contents, ``__package__`` and
``__process__`` in paths; the ``.tmpl`` suffix keeps the templates out of Baton's own
linting and imports.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from baton.app import RESERVED_TOP_LEVEL
from baton.errors import BatonUsageError

TEMPLATES = Path(__file__).resolve().parent / "scaffold"
NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
TAKEN = {*RESERVED_TOP_LEVEL, "tests", "test", "temporalio", "pydantic", "yaml", "cel", "httpx", "pytest"}
"""Package names an app may not take: they would shadow what it imports."""


def names_for(name: str) -> dict[str, str]:
    """The substitutions for app ``name``: its name, Python package and process name.

    Raises:
        BatonUsageError: the name cannot make a package and a process name.
    """
    if not NAME.match(name):
        raise BatonUsageError(
            f"app name {name!r}: use lower-case letters and digits, words joined by '-' or '_' "
            "(e.g. invoices, vendor-invoices)"
        )
    package = name.replace("-", "_")
    if package in TAKEN or keyword.iskeyword(package):
        raise BatonUsageError(
            f"app name {name!r}: its package {package!r} would shadow a module; pick another"
        )
    return {"name": name, "package": package, "process": name.replace("_", "-")}


def write_app(target: Path, *, name: str) -> Path:
    """Write the app into ``target`` (new, or an empty directory); returns the directory.

    Raises:
        BatonUsageError: a bad name, or ``target`` exists and is not empty (nothing is
            overwritten, nothing half-written).
    """
    values = names_for(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BatonUsageError(f"{target} exists and is not empty: nothing written")
    files: dict[Path, str] = {}
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = str(template.relative_to(TEMPLATES)).removesuffix(".tmpl")
        relative = relative.replace("__package__", values["package"]).replace(
            "__process__", values["process"]
        )
        if relative == "gitignore":
            relative = ".gitignore"
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        files[target / relative] = text
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
