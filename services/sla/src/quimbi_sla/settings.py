"""The SLA service's settings: the common ones plus the business-hours calendar and scheduler."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, field_validator

from quimbi_common.settings import CommonSettings

from .calendar import BusinessCalendar, parse_holidays, parse_weekly_hours


class Settings(CommonSettings):
    """Environment: SLA_BUSINESS_TIMEZONE (or SUPPORT_TIMEZONE), SLA_BUSINESS_HOURS,
    SLA_HOLIDAYS, SLA_SCHEDULER_INTERVAL_SECONDS, SLA_SCHEDULER_BATCH_SIZE."""

    service_name: str = "sla"
    port: int = 8103
    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/sla"

    sla_business_timezone: str = Field(
        default="UTC", validation_alias=AliasChoices("sla_business_timezone", "support_timezone")
    )
    sla_business_hours: str = "mon-fri 09:00-17:00"
    sla_holidays: str = ""
    sla_scheduler_interval_seconds: float = 1.0
    sla_scheduler_batch_size: int = 500

    @field_validator("sla_business_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @field_validator("sla_business_hours")
    @classmethod
    def _readable_hours(cls, value: str) -> str:
        BusinessCalendar(ZoneInfo("UTC"), parse_weekly_hours(value))
        return value

    @field_validator("sla_holidays")
    @classmethod
    def _readable_holidays(cls, value: str) -> str:
        parse_holidays(value)
        return value

    @property
    def business_calendar(self) -> BusinessCalendar:
        return _calendar(self.sla_business_timezone, self.sla_business_hours, self.sla_holidays)


@lru_cache(maxsize=8)
def _calendar(timezone: str, hours: str, holidays: str) -> BusinessCalendar:
    return BusinessCalendar(ZoneInfo(timezone), parse_weekly_hours(hours), parse_holidays(holidays))
