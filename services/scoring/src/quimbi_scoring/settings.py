"""The scoring service's settings: the seed's SCORING_* weights and the recalculation cadence."""

from __future__ import annotations

from pydantic import Field

from quimbi_common.settings import CommonSettings
from quimbi_common.topic_alerts import MAX_KEYWORD_LENGTH, MAX_KEYWORDS

from .domain import Weights


class Settings(CommonSettings):
    service_name: str = "scoring"
    port: int = 8104
    database_url: str = "postgresql+asyncpg://quimbi:quimbi@127.0.0.1:5432/scoring"

    scoring_recalculation_interval: float = Field(default=300.0, gt=0)
    scoring_urgency_weight: float = 1.5
    scoring_value_weight: float = 2.0
    scoring_churn_weight: float = 3.0
    scoring_high_value_ltv: float = Field(default=1000.0, gt=0)
    topic_alert_boost: float = 5.0

    # How often the recalculation loop looks for due slots once it has caught up. A slot comes
    # due one poll before its interval ends, so every open ticket is recomputed within
    # SCORING_RECALCULATION_INTERVAL, not one poll later.
    scoring_recalc_poll_seconds: float = Field(default=1.0, gt=0)
    # Limits on the `topic_alerts` query parameter (count and length of each keyword).
    topic_alerts_max_keywords: int = MAX_KEYWORDS
    topic_alert_max_length: int = MAX_KEYWORD_LENGTH

    @property
    def weights(self) -> Weights:
        return Weights(
            urgency=self.scoring_urgency_weight,
            value=self.scoring_value_weight,
            churn=self.scoring_churn_weight,
            high_value_ltv=self.scoring_high_value_ltv,
            topic_alert_boost=self.topic_alert_boost,
        )

    @property
    def recalc_period_seconds(self) -> float:
        """Seconds between two turns of a recalculation slot."""
        return max(1.0, self.scoring_recalculation_interval - self.scoring_recalc_poll_seconds)
