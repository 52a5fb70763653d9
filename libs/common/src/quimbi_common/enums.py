"""The support domain's shared vocabulary: every service and every event contract uses these."""

from __future__ import annotations

from enum import StrEnum


class TicketStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_done(self) -> bool:
        return self in (TicketStatus.RESOLVED, TicketStatus.CLOSED)


class TicketPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Channel(StrEnum):
    EMAIL = "email"
    CHAT = "chat"
    PHONE = "phone"
    SMS = "sms"
    FORM = "form"


class Intent(StrEnum):
    COMPLAINT = "complaint"
    QUESTION = "question"
    FEEDBACK = "feedback"
    REFUND_REQUEST = "refund_request"
    CANCELLATION = "cancellation"
    BUG_REPORT = "bug_report"
    PRAISE = "praise"
    OTHER = "other"


class Role(StrEnum):
    """Agent roles, ordered: each holds the rights of the ones before it."""

    AGENT = "agent"
    SENIOR_AGENT = "senior_agent"
    TEAM_LEAD = "team_lead"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class AgentStatus(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    BUSY = "busy"
    OFFLINE = "offline"


class AssignmentStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    TRANSFERRED = "transferred"


class AssignmentReason(StrEnum):
    MANUAL = "manual"
    AUTO_ROUTE = "auto_route"
    ESCALATION = "escalation"
    TRANSFER = "transfer"


class SlaStatus(StrEnum):
    PENDING = "pending"
    AT_RISK = "at_risk"
    MET = "met"
    BREACHED = "breached"


class SlaMetric(StrEnum):
    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"
