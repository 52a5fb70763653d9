"""What production refuses to start on: development secrets that would let anyone in."""

from __future__ import annotations

from quimbi_common.settings import DEV_API_KEY

from .domain import password_problem
from .settings import DEFAULT_ADMIN_PASSWORD, Settings


def production_problems(settings: Settings) -> list[str]:
    """Every reason the settings are unsafe for ENVIRONMENT=production (empty when fine).
    The bootstrap password must also meet the password rules in any environment."""
    problems: list[str] = []
    bootstrap_password = settings.bootstrap_admin_password.get_secret_value()
    weak = password_problem(bootstrap_password)
    if weak:
        problems.append(f"BOOTSTRAP_ADMIN_PASSWORD {weak}")
    if not settings.is_production:
        return problems
    if bootstrap_password == DEFAULT_ADMIN_PASSWORD:
        problems.append("BOOTSTRAP_ADMIN_PASSWORD is the development default")
    if settings.jwt_private_key is None or not settings.jwt_private_key.get_secret_value():
        problems.append("JWT_PRIVATE_KEY is not set (only development generates a key)")
    if settings.api_key.get_secret_value() == DEV_API_KEY:
        problems.append("API_KEY is the development default")
    return problems
