"""``baton serve``: the approval gateway, where people log in, see their inbox and decide.

Approvers are not Temporal operators: the gateway is where they work, and where identity
is authenticated (OpenID Connect in production, local accounts by default). It talks to
Temporal through Baton's client and signs every decision and case submission it sends,
so the workflow can trust the name in it. Server-rendered HTML that works without
JavaScript; see README, "The approval gateway".
"""

from baton.gateway.app import create_app
from baton.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app"]
