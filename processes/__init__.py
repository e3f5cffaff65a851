"""Reference process specs (YAML), their contracts, and the embedded roles directory.

``specs_dir()`` is where ``baton start refund-request`` finds ``refund-request.yaml``.
"""

from __future__ import annotations

from pathlib import Path


def specs_dir() -> Path:
    """Directory holding the bundled ``*.yaml`` process specs."""
    return Path(__file__).resolve().parent
