"""`python -m quimbi_scoring` serves the service (port 8104 by default);
`python -m quimbi_scoring migrate` upgrades its database to the latest migration first."""

from __future__ import annotations

import sys

from quimbi_common.migrations import upgrade
from quimbi_common.runtime import serve

from .main import MIGRATIONS, build_app
from .settings import Settings


def main(argv: list[str]) -> None:
    settings = Settings()
    if argv[1:2] == ["migrate"]:
        upgrade(MIGRATIONS, settings.database_url)
        return
    serve(build_app, settings)


if __name__ == "__main__":
    main(sys.argv)
