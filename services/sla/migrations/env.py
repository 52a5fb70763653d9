from quimbi_common.migrations import run_env
from quimbi_sla.models import Base

run_env(Base.metadata)
