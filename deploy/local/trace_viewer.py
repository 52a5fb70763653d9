"""A trace viewer for `make run TRACING=1`: Jaeger v2 (all-in-one, in-memory storage), built
from its Go module into `.local/bin/jaeger` the first time (`go` must be installed), listening
for OTLP/HTTP on 127.0.0.1:4318 with its UI on http://127.0.0.1:16686.

The services export to it because the launcher sets `OTEL_EXPORTER_OTLP_ENDPOINT`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".local" / "bin"
# The module's v1.x tags carry cmd/jaeger, the v2 binary (its v2.x tags are not module versions).
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.76.0"
OTLP_ENDPOINT = "http://127.0.0.1:4318"
UI_URL = "http://127.0.0.1:16686"


def build_jaeger() -> Path:
    """The jaeger binary, built from its Go module if it is not there yet (several minutes).
    `go install module/cmd/jaeger@version` refuses it (its go.mod has `replace` directives),
    so the module is downloaded and `./cmd/jaeger` built inside it."""
    binary = BIN / "jaeger"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise SystemExit("TRACING=1 needs Go to build Jaeger (https://go.dev/dl); or unset it")
    BIN.mkdir(parents=True, exist_ok=True)
    print(f"building Jaeger {JAEGER_VERSION} into {BIN} (first time only; minutes)", flush=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    found = subprocess.run(  # noqa: S603 (fixed arguments)
        [go, "mod", "download", "-json", f"{JAEGER_MODULE}@{JAEGER_VERSION}"],
        check=True,
        capture_output=True,
        env=env,
    )
    source = Path(json.loads(found.stdout)["Dir"])
    with tempfile.TemporaryDirectory(prefix="jaeger-src-") as scratch:
        tree = Path(scratch) / "jaeger"
        shutil.copytree(source, tree)  # the module cache is read-only; go build writes go.sum
        for path in [tree, *tree.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        subprocess.run(  # noqa: S603 (fixed arguments)
            [go, "build", "-o", str(binary), "./cmd/jaeger"], check=True, cwd=tree, env=env
        )
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
