"""Definitions shared by engine, service and client: pydantic and the standard library only (no I/O, no numpy)."""
