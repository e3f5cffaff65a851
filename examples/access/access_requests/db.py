"""The access app's business data: employees, systems and the grants ledger.

An embedded SQLite file, created and seeded by the app itself (a dozen
employees, eight systems of three sensitivities, a few existing grants). Expiry
dates are relative to the moment of seeding so current grants stay current.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS employees (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    department TEXT NOT NULL,
    manager_id TEXT REFERENCES employees(id),
    employment TEXT NOT NULL CHECK (employment IN ('employee', 'contractor')),
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS systems (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sensitivity TEXT NOT NULL CHECK (sensitivity IN ('low', 'medium', 'high')),
    owner_team TEXT NOT NULL,
    max_duration_days INTEGER NOT NULL CHECK (max_duration_days > 0)
);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    employee_id TEXT NOT NULL REFERENCES employees(id),
    system_id TEXT NOT NULL REFERENCES systems(id),
    level TEXT NOT NULL CHECK (level IN ('read', 'write', 'admin')),
    granted_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    case_id TEXT NOT NULL,
    decided_by TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Employee:
    """A seeded employee; ``note`` says which demo case relies on them."""

    id: str
    name: str
    department: str
    manager_id: str | None
    employment: str = "employee"
    active: bool = True
    note: str = ""


@dataclass(frozen=True)
class System:
    """A system access can be granted to."""

    id: str
    name: str
    sensitivity: str
    owner_team: str
    max_duration_days: int


EMPLOYEES = [
    Employee("EMP-001", "Ana Souza", "engineering", "EMP-010", note="cases/read-access.json: auto"),
    Employee("EMP-002", "Ben Okafor", "finance", "EMP-011", note="cases/write-access.json: team lead"),
    Employee("EMP-003", "Chloe Martin", "engineering", "EMP-010", "contractor", note="contractor: read only"),
    Employee("EMP-004", "Dev Patel", "sales", "EMP-011", note="write on crm: nobody approves"),
    Employee("EMP-005", "Eli Novak", "platform", "EMP-010", note="admin on prod-k8s: two from security"),
    Employee("EMP-006", "Fay Lindqvist", "data", "EMP-010", note="asks longer than analytics allows"),
    Employee("EMP-007", "Gus Romero", "support", "EMP-011", active=False, note="left the company"),
    Employee("EMP-008", "Hana Ito", "hr", "EMP-011", note="write on payroll-db: team lead"),
    Employee(
        "EMP-009",
        "Ivo Costa",
        "engineering",
        "EMP-010",
        note="already writes to source-code: asking again is rejected",
    ),
    Employee("EMP-010", "Jun Takahashi", "engineering", None),
    Employee("EMP-011", "Kai Mensah", "finance", None),
    Employee("EMP-012", "Lea Fischer", "security", "EMP-010", note="read on source-code: auto"),
]

SYSTEMS = [
    System("wiki", "Company wiki", "low", "it", 365),
    System("source-code", "Source code hosting", "low", "engineering", 365),
    System("analytics", "Analytics warehouse", "low", "data", 90),
    System("crm", "Customer relationship management", "medium", "sales", 180),
    System("hr-portal", "HR portal", "medium", "hr", 180),
    System("billing-api", "Billing API", "medium", "finance", 90),
    System("payroll-db", "Payroll database", "high", "finance", 90),
    System("prod-k8s", "Production Kubernetes", "high", "platform", 30),
]

SEEDED_GRANTS = [  # employee, system, level, days left
    ("EMP-001", "crm", "read", 120),
    ("EMP-002", "payroll-db", "read", 20),
    ("EMP-005", "prod-k8s", "read", 25),
    ("EMP-009", "source-code", "write", 200),
]


class AccessDB:
    """Opens, creates and seeds the access database at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode (autocommit; callers open transactions) that always closes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        finally:
            conn.close()

    def ensure(self) -> None:
        """Create the schema and seed it if it is empty (idempotent)."""
        with self.connect() as conn:
            conn.executescript(SCHEMA)
            seeded = conn.execute("SELECT COUNT(*) FROM employees").fetchone()[0]
        if not seeded:
            self.seed()

    def reset(self) -> None:
        """Drop everything and seed afresh (the demo does this so expiry dates start from now)."""
        with self.connect() as conn:
            conn.executescript(
                "DROP TABLE IF EXISTS grants; DROP TABLE IF EXISTS systems; DROP TABLE IF EXISTS employees;"
            )
        self.ensure()

    def seed(self, *, now: datetime | None = None) -> None:
        """Insert the employees, systems and existing grants, dated relative to ``now``."""
        now = now or datetime.now(UTC)
        with self.connect() as conn:
            conn.execute("BEGIN")
            # Managers first: the manager column references employees.
            for e in sorted(EMPLOYEES, key=lambda e: e.manager_id is not None):
                email = e.name.split()[0].lower() + "@example.com"
                conn.execute(
                    "INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (e.id, e.name, email, e.department, e.manager_id, e.employment, int(e.active)),
                )
            conn.executemany(
                "INSERT INTO systems VALUES (?, ?, ?, ?, ?)",
                [(s.id, s.name, s.sensitivity, s.owner_team, s.max_duration_days) for s in SYSTEMS],
            )
            for employee, system, level, days_left in SEEDED_GRANTS:
                conn.execute(
                    "INSERT INTO grants (idempotency_key, employee_id, system_id, level, granted_at,"
                    " expires_at, case_id, decided_by) VALUES (?, ?, ?, ?, ?, ?, 'seed', 'seed')",
                    (
                        f"seed/{employee}/{system}",
                        employee,
                        system,
                        level,
                        (now - timedelta(days=10)).isoformat(),
                        (now + timedelta(days=days_left)).isoformat(),
                    ),
                )
            conn.execute("COMMIT")

    def grants(self, employee_id: str | None = None) -> list[dict[str, object]]:
        """Grant ledger rows (optionally for one employee), oldest first."""
        with self.connect() as conn:
            if employee_id is None:
                rows = conn.execute("SELECT * FROM grants ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM grants WHERE employee_id = ? ORDER BY id", (employee_id,)
                ).fetchall()
        return [dict(r) for r in rows]
