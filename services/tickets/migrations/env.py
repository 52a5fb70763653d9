from quimbi_common.migrations import run_env
from quimbi_tickets.models import Base

run_env(Base.metadata)
