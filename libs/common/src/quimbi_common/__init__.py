"""Mechanisms every Quimbi service shares: each written once, used everywhere."""
