"""The reference process's business data: orders, customers and the refund ledger.

An embedded SQLite file, created and seeded by the project itself (150 orders,
with edge cases the demo and tests name by id). Dates are relative to the
moment of seeding so refund windows stay meaningful.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    category TEXT NOT NULL,
    amount_paid_cents INTEGER NOT NULL CHECK (amount_paid_cents >= 0),
    ordered_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES orders(id),
    case_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    reason_code TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FixtureOrder:
    """A seeded order with a known shape, so demos and tests can rely on it."""

    order_id: str
    customer_id: str
    category: str
    amount_paid: float
    delivered_days_ago: int | None
    refunded: float = 0.0
    note: str = ""


FIXTURES = [
    FixtureOrder("ORD-1001", "CUS-001", "apparel", 34.90, 5, note="small: auto-approved"),
    FixtureOrder("ORD-1002", "CUS-002", "electronics", 249.00, 3, note="needs support-lead"),
    FixtureOrder("ORD-1003", "CUS-003", "digital", 79.98, 2, note="digital: 50% rule"),
    FixtureOrder("ORD-1004", "CUS-004", "home", 45.00, 8, note="customer asks for too much"),
    FixtureOrder("ORD-1005", "CUS-005", "apparel", 120.00, 4, note="requested by someone else"),
    FixtureOrder("ORD-1006", "CUS-006", "home", 310.00, 6, note="nobody approves in time"),
    FixtureOrder("ORD-1007", "CUS-007", "electronics", 1899.00, 9, note="needs finance"),
    FixtureOrder("ORD-1008", "CUS-008", "apparel", 60.00, 10, refunded=60.00, note="refunded"),
    FixtureOrder("ORD-1009", "CUS-001", "home", 80.00, 12, refunded=30.00, note="partly refunded"),
    FixtureOrder("ORD-1010", "CUS-002", "apparel", 40.00, 45, note="outside the window"),
    FixtureOrder("ORD-1011", "CUS-003", "gift_card", 50.00, 1, note="gift cards never refund"),
    FixtureOrder("ORD-1012", "CUS-004", "final_sale", 25.00, 3, note="final sale"),
    FixtureOrder("ORD-1013", "CUS-009", "electronics", 7200.00, 2, note="large: two approvers"),
    FixtureOrder("ORD-1014", "CUS-010", "home", 120.00, 5, note="lead asks for changes"),
    FixtureOrder("ORD-1015", "CUS-011", "apparel", 42.50, 6, note="the LLM demo case"),
    FixtureOrder("ORD-1016", "CUS-012", "apparel", 28.50, 4, note="the README tour: auto-approved"),
    FixtureOrder("ORD-1017", "CUS-005", "electronics", 189.00, 3, note="the README tour: a support lead"),
    FixtureOrder("ORD-1018", "CUS-006", "electronics", 2400.00, 1, note="panel: fraud rejects, drafter caps"),
    FixtureOrder("ORD-1019", "CUS-007", "home", 300.00, 7, refunded=100.00, note="panel: a person decides"),
]

CATEGORIES = ["apparel", "electronics", "home", "digital", "final_sale", "books"]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
ORDER_COUNT = 150


def cents(amount: float) -> int:
    """Money as integer cents, the ledger's unit."""
    return round(amount * 100)


class RefundsDB:
    """Opens, creates and seeds the reference database at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in WAL mode that commits on success and always closes."""
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
            seeded = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        if not seeded:
            self.seed()

    def reset(self) -> None:
        """Drop everything and seed afresh (the demo does this so windows start from now)."""
        with self.connect() as conn:
            conn.executescript(
                "DROP TABLE IF EXISTS refunds; DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS customers;"
            )
        self.ensure()

    def seed(self, *, now: datetime | None = None) -> None:
        """Insert the fixture orders plus seeded random ones, dated relative to ``now``."""
        now = now or datetime.now(UTC)
        rng = random.Random(1207)  # noqa: S311 (reproducible seed data, not security)
        customers = [(f"CUS-{n:03d}", NAMES[(n - 1) % len(NAMES)]) for n in range(1, 13)]
        orders = [
            (f.order_id, f.customer_id, f.category, f.amount_paid, f.delivered_days_ago, f.refunded)
            for f in FIXTURES
        ]
        for n in range(len(FIXTURES) + 1, ORDER_COUNT + 1):
            customer = customers[rng.randrange(len(customers))][0]
            amount = round(rng.uniform(8, 900), 2)
            orders.append(
                (
                    f"ORD-{1000 + n}",
                    customer,
                    rng.choice(CATEGORIES),
                    amount,
                    rng.randint(0, 50),
                    0.0,
                )
            )
        with self.connect() as conn:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO customers VALUES (?, ?, ?)",
                [(cid, name, f"{name.lower()}@example.com") for cid, name in customers],
            )
            for oid, cid, category, amount, days, refunded in orders:
                delivered = None if days is None else (now - timedelta(days=days)).isoformat()
                ordered = (now - timedelta(days=(days or 0) + 3)).isoformat()
                conn.execute(
                    "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                    (oid, cid, category, cents(amount), ordered, delivered),
                )
                if refunded:
                    conn.execute(
                        "INSERT INTO refunds (idempotency_key, order_id, case_id, amount_cents,"
                        " reason_code, decided_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (f"seed/{oid}", oid, "seed", cents(refunded), "other", "seed", ordered),
                    )
            conn.execute("COMMIT")

    def add_orders(self, amounts: dict[str, float], *, customer: str = "CUS-001", days_ago: int = 2) -> None:
        """Extra delivered ``home`` orders (id → amount paid), for load and crash tests."""
        delivered = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
        with self.connect() as conn:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, 'home', ?, ?, ?)",
                [(oid, customer, cents(amount), delivered, delivered) for oid, amount in amounts.items()],
            )
            conn.execute("COMMIT")

    def ledger(self, order_id: str | None = None) -> list[dict[str, object]]:
        """Refund ledger rows (optionally for one order), oldest first."""
        with self.connect() as conn:
            if order_id is None:
                rows = conn.execute("SELECT * FROM refunds ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM refunds WHERE order_id = ? ORDER BY id", (order_id,)
                ).fetchall()
        return [dict(r) for r in rows]
