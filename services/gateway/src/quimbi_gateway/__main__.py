from quimbi_common.runtime import serve

from .main import build_app
from .settings import Settings

if __name__ == "__main__":
    serve(build_app, Settings())
