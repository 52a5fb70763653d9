"""A private S3-compatible server for the tests: gofakes3 (built by `deploy/local/infra.sh
build-s3`, as `make infra` does) on a free port with its files in a temporary directory."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "deploy" / "local" / "infra.sh"
BUCKET = "attachments-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary() -> Path:
    local = Path(os.environ.get("QUIMBI_LOCAL_DIR", ROOT / ".local"))
    binary = local / "bin" / "gofakes3"
    if not binary.exists():
        subprocess.run([str(INFRA), "build-s3"], check=True, timeout=600)
    return binary


@contextmanager
def s3_server(data_dir: Path) -> Iterator[str]:
    """The endpoint URL of a running server with the bucket `BUCKET`; stopped on exit."""
    port = _free_port()
    process = subprocess.Popen(
        [
            str(_binary()),
            "-backend",
            "fs",
            "-fs.path",
            str(data_dir),
            "-fs.create",
            "-host",
            f"127.0.0.1:{port}",
            "-initialbucket",
            BUCKET,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gofakes3 did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
