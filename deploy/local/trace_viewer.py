"""A trace viewer for `make run TRACING=1`: Jaeger v2 (all-in-one, in-memory storage), built
from its Go module into `.local/bin/jaeger` the first time (`go` must be installed), listening
for OTLP/HTTP on 127.0.0.1:4318 with its UI on http://127.0.0.1:16686.

The services export to it because the launcher sets `OTEL_EXPORTER_OTLP_ENDPOINT`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".local" / "bin"
# The v1.x tags of the module carry cmd/jaeger, the v2 binary (v2.x tags are not module versions).
JAEGER_MODULE = "github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0"
OTLP_ENDPOINT = "http://127.0.0.1:4318"
UI_URL = "http://127.0.0.1:16686"


def build_jaeger() -> Path:
    """The jaeger binary, built with `go install` if it is not there yet (several minutes)."""
    binary = BIN / "jaeger"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise SystemExit("TRACING=1 needs Go to build Jaeger (https://go.dev/dl); or unset it")
    BIN.mkdir(parents=True, exist_ok=True)
    print(f"building {JAEGER_MODULE} into {BIN} (first time only; several minutes)", flush=True)
    env = {**os.environ, "GOBIN": str(BIN), "CGO_ENABLED": "0"}
    subprocess.run([go, "install", JAEGER_MODULE], check=True, env=env)  # noqa: S603 (fixed args)
    return binary


async def start_jaeger(log_dir: Path) -> asyncio.subprocess.Process:
    """Start Jaeger (its default configuration: OTLP receivers, memory storage, the UI)."""
    binary = await asyncio.to_thread(build_jaeger)
    await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
    log = await asyncio.to_thread((log_dir / "jaeger.log").open, "ab")
    process = await asyncio.create_subprocess_exec(
        str(binary), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process
