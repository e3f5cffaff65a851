"""Login throttling: failed logins counted per user name and per client address.

Two counters, because there are two attacks. Guessing one person's password from
many addresses is stopped by the per-user limit (5 failures in 15 minutes by
default); credential stuffing, one address trying a few common passwords against
many user names, is stopped by the per-address limit (20 in 15 minutes), which no
per-user counter sees. Both use a sliding window: a failure counts for ``window``
seconds after it happened and then stops counting, so nothing is locked for good.

That bound is deliberate. Anyone can fail logins in someone else's name, so a
per-user limit lets others lock a person out; with a sliding window the lockout
lasts at most one window after the last failure, and the person's own successful
login clears their counter. IPv6 addresses are counted per /64, the block one
subscriber usually holds, so rotating through it buys nothing.

The counters live in this process's memory (a restart or another replica starts
afresh) and are bounded: beyond ``max_keys`` the least recently failed are forgotten,
so a flood of made-up names cannot exhaust memory. Identities are compared
canonically (``baton.identity``); over-long keys are stored as digests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from baton.identity import canonical_or_none

_LONGEST_KEY = 128
"""Longer user names or addresses are kept as a digest, so a key's size is bounded too."""


class LoginThrottle:
    """Counts failed logins in a sliding window, per user and per client address.

    Args:
        per_user: failures of one user name allowed in ``window`` before it must wait.
        per_address: failures from one client address allowed in ``window``.
        window: seconds a failure counts for.
        max_keys: most users and addresses tracked at once (least recently failed evicted).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 20,
        window: float = 15 * 60,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_user < 1 or per_address < 1 or window <= 0 or max_keys < 2:
            raise ValueError("LoginThrottle: limits, window and max_keys must be positive")
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        """Key → times of its most recent failures (at most its limit), least recently failed first."""

    def retry_after(self, user: str, address: str) -> float:
        """Seconds to wait before ``user`` may try again from ``address``; 0.0 if allowed now."""
        now = self._clock()
        return max(
            self._wait(_user_key(user), self.per_user, now),
            self._wait(_address_key(address), self.per_address, now),
        )

    def failed(self, user: str, address: str) -> None:
        """Count a failed login of ``user`` from ``address``."""
        now = self._clock()
        self._record(_user_key(user), self.per_user, now)
        self._record(_address_key(address), self.per_address, now)

    def succeeded(self, user: str, address: str) -> None:
        """A login of ``user`` succeeded: forget the user's failures.

        The address's failures stay: one account's password known to an attacker
        must not reset the count of everything else tried from that address.
        """
        self._failures.pop(_user_key(user), None)

    def __len__(self) -> int:
        """How many users and addresses are tracked (for tests and metrics)."""
        return len(self._failures)

    def _wait(self, key: str, limit: int, now: float) -> float:
        times = self._failures.get(key)
        if times is None or len(times) < limit:
            return 0.0
        return max(0.0, times[0] + self.window - now)  # the limit-th most recent failure ages out

    def _record(self, key: str, limit: int, now: float) -> None:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=limit)
        else:
            self._failures.move_to_end(key)
        times.append(now)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)


def _user_key(user: str) -> str:
    return "u:" + _bounded(canonical_or_none(user) or user)


def _address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return "a:" + _bounded(address)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return f"a:{mapped}"
        return f"a:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"a:{ip}"


def _bounded(text: str) -> str:
    if len(text) <= _LONGEST_KEY:
        return text
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
