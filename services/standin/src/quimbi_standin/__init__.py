"""Deterministic stand-in for the external Quimbi Intelligence API (development and tests)."""
