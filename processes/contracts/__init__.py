"""Handoff contracts of the reference processes (pure pydantic, sandbox-safe)."""
