from quimbi_ai_proxy.models import Base
from quimbi_common.migrations import run_env

run_env(Base.metadata)
