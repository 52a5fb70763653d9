"""The agents service's settings (environment names follow the seed where it names them)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, field_validator

from quimbi_common.settings import CommonSettings

DEFAULT_ADMIN_EMAIL = "admin@example.com"
DEFAULT_ADMIN_PASSWORD = "admin-change-me"  # noqa: S105 - the documented development default


def _repo_root() -> Path:
    """The workspace root (holds uv.lock): dev keys go to <repo>/.local/keys wherever we run."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "uv.lock").exists():
            return parent
    return Path.cwd()


class Settings(CommonSettings):
    service_name: str = "agents"
    port: int = 8102
    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/agents"

    # Tokens. JWT_PRIVATE_KEY (PEM) + JWT_KEY_ID sign; JWT_ADDITIONAL_PUBLIC_KEYS (a JWKS JSON
    # document or a JSON list of JWKs) keeps older keys verifiable during a rotation.
    access_token_expire_hours: int = 24
    jwt_private_key: SecretStr | None = None
    jwt_key_id: str | None = None
    jwt_additional_public_keys: str | None = None
    jwt_keys_dir: Path = _repo_root() / ".local" / "keys"

    # Passwords and login throttling (see the README's "Login throttling").
    bcrypt_rounds: int = 12
    # Failures are remembered this long after the last one (and the per-address window).
    login_window_seconds: int = 900
    # Growing delays: after this many failures for one account from one address, and for one
    # account from anywhere, each further failure doubles the wait, from base up to max.
    login_free_failures_per_account_address: int = 5
    login_free_failures_per_account: int = 20
    login_delay_base_seconds: float = 1.0
    login_delay_max_seconds: float = 900.0
    # A ceiling per client address over all accounts, high enough for an office behind one NAT.
    login_max_failures_per_ip: int = 500
    # An address that logged in to an account is known-good for it this long.
    login_known_address_days: int = 90
    login_throttle_prefix: str = "agents:login"  # Redis key prefix

    # First admin, created at startup when no admin exists.
    bootstrap_admin_email: str = DEFAULT_ADMIN_EMAIL
    bootstrap_admin_password: SecretStr = SecretStr(DEFAULT_ADMIN_PASSWORD)
    bootstrap_admin_name: str = "Administrator"

    # Assignment and metrics.
    auto_assign: bool = False
    default_max_concurrent_tickets: int = 10
    waiting_tickets_batch: int = 200
    support_timezone: str = "UTC"

    @field_validator("support_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("bcrypt_rounds")
    @classmethod
    def _bcrypt_rounds(cls, value: int) -> int:
        if not 4 <= value <= 31:
            raise ValueError("bcrypt rounds must be between 4 and 31")
        return value

    @property
    def access_token_ttl_seconds(self) -> int:
        return self.access_token_expire_hours * 3600

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.support_timezone)
