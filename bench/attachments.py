"""Attachments: what an upload and a download cost the tickets service, per backend.

Needs the local infrastructure (`make infra`). Creates a scratch database, starts `python -m
quimbi_tickets` on a spare port storing attachments in a temporary directory (`local`) or in a
private gofakes3 (`s3`, built by `deploy/local/infra.sh build-s3`), uploads `--files` files of
`--mib` MiB each to one ticket over HTTP, downloads each back (checking the bytes), and prints
the tickets process's CPU per MiB (from /proc, idle rate subtracted) and its peak resident
memory (VmHWM) against its resident memory before the first upload: a file must stream, not be
held whole in memory.

    uv run python bench/attachments.py [--backend local|s3|both] [--files 6] [--mib 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _shared import cpu_seconds, free_port, record, stop_processes
from tickets_inbox import MIGRATIONS, start, wait_until_live

from quimbi_common.enums import Role
from quimbi_common.migrations import upgrade
from quimbi_common.testing import SigningKeys, create_database, drop_database, unique

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "tickets" / "tests"))
from s3server import BUCKET, s3_server  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
MIB = 1024 * 1024


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def _idle_cpu_rate(pid: int, seconds: float = 3.0) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def run_backend(backend: str, files: int, mib: int, env: dict[str, str]) -> None:
    name = unique("bench_attach_")
    url = await create_database(name)
    keys = SigningKeys()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS, url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        processes.append(
            start(
                "quimbi_tickets",
                port,
                keys,
                DATABASE_URL=url,
                ATTACHMENTS_MAX_BYTES=str((mib + 1) * MIB),
                **env,
            )
        )
        pid = processes[0].pid
        await wait_until_live(base, processes[0])
        headers = {"Authorization": f"Bearer {keys.token(Role.SENIOR_AGENT, ttl_seconds=3600)}"}
        async with httpx.AsyncClient(base_url=base, timeout=120, trust_env=False) as client:
            created = await client.post(
                "/api/tickets",
                json={
                    "customer": {"email": f"{unique('c')}@example.com"},
                    "subject": "files",
                    "channel": "email",
                },
                headers=headers,
            )
            ticket = created.json()["id"]
            payloads = [PNG + os.urandom(mib * MIB - len(PNG)) for _ in range(files)]
            idle = await _idle_cpu_rate(pid)
            rss_before = _memory_kib(pid, "VmRSS")
            cpu, wall = cpu_seconds(pid), time.perf_counter()
            ids = []
            for payload in payloads:
                response = await client.post(
                    f"/api/tickets/{ticket}/attachments",
                    files={"file": ("big.png", payload, "image/png")},
                    headers=headers,
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            up_wall = time.perf_counter() - wall
            up_cpu = cpu_seconds(pid) - cpu - idle * up_wall
            cpu, wall = cpu_seconds(pid), time.perf_counter()
            for attachment, payload in zip(ids, payloads, strict=True):
                digest = hashlib.sha256()
                async with client.stream(
                    "GET", f"/api/tickets/{ticket}/attachments/{attachment}", headers=headers
                ) as download:
                    assert download.status_code == 200
                    async for chunk in download.aiter_bytes():
                        digest.update(chunk)
                assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
            down_wall = time.perf_counter() - wall
            down_cpu = cpu_seconds(pid) - cpu - idle * down_wall
        peak = _memory_kib(pid, "VmHWM")
        total = files * mib
        print(
            f"{backend}: {files} files of {mib} MiB; upload {up_cpu * 1000 / total:.1f} ms CPU/MiB "
            f"({total / up_wall:.0f} MiB/s), download {down_cpu * 1000 / total:.1f} ms CPU/MiB "
            f"({total / down_wall:.0f} MiB/s); RSS before {rss_before / 1024:.0f} MiB, peak "
            f"{peak / 1024:.0f} MiB (+{(peak - rss_before) / 1024:.0f} MiB for {mib} MiB files)"
        )
        record(
            f"attachments ({backend}): tickets CPU per MiB uploaded / downloaded",
            "streamed, not held in memory",
            f"{up_cpu * 1000 / total:.1f} / {down_cpu * 1000 / total:.1f} ms",
            f"peak RSS +{(peak - rss_before) / 1024:.0f} MiB over {mib} MiB files",
        )
    finally:
        stop_processes(processes)
        await drop_database(name)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")
    backends = ["local", "s3"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            if backend == "local":
                env = {"ATTACHMENTS_DIR": str(Path(scratch) / "files")}
                await run_backend(backend, args.files, args.mib, env)
                continue
            with s3_server(Path(scratch) / "s3") as endpoint:
                env = {
                    "ATTACHMENTS_STORAGE": "s3",
                    "ATTACHMENTS_S3_ENDPOINT": endpoint,
                    "ATTACHMENTS_S3_BUCKET": BUCKET,
                    "ATTACHMENTS_S3_REGION": "us-east-1",
                    "ATTACHMENTS_S3_ACCESS_KEY_ID": "bench",
                    "ATTACHMENTS_S3_SECRET_ACCESS_KEY": "bench",
                }
                await run_backend(backend, args.files, args.mib, env)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--mib", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
