"""ai-proxy's own tables: the outbox, processed events, and what it last told the suite."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from quimbi_common.outbox import infrastructure_tables


class Base(DeclarativeBase):
    pass


infrastructure_tables(Base.metadata)


class PublishedIntelligence(Base):
    """The churn risk and LTV last published per customer, so an unchanged answer from Quimbi
    does not publish `customer.intelligence_updated` again."""

    __tablename__ = "published_intelligence"

    customer_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    churn_risk: Mapped[float] = mapped_column(sa.Float)
    lifetime_value: Mapped[float] = mapped_column(sa.Float)
    published_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
