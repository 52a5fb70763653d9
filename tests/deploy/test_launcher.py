"""deploy/local/launcher.py's manners: one-line errors, no colour off a terminal, no
consumer-group chatter on the console, and a crash-looping service reported, not restarted
forever."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import launcher  # noqa: E402

LAUNCHER = ROOT / "deploy" / "local" / "launcher.py"
UNREACHABLE_PG = "postgresql://quimbi:quimbi@127.0.0.1:1/postgres"


def run_launcher(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), "--no-seed", "--log-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.unit
def test_env_pairs_are_parsed_or_refused_naming_the_option() -> None:
    assert launcher.parse_pairs(["A=1", "B=x=y", "C="], "--env") == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("NOEQUALS", "=value"):
        with pytest.raises(ValueError, match=f"--env '{bad}': expected KEY=VALUE"):
            launcher.parse_pairs([bad], "--env")


@pytest.mark.unit
def test_a_malformed_env_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_launcher("--env", "LOG_LEVEL", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("--env 'LOG_LEVEL': expected KEY=VALUE")


@pytest.mark.unit
def test_postgresql_unreachable_is_a_one_line_error_naming_the_setting(tmp_path: Path) -> None:
    result = run_launcher(
        "--postgres-dsn", UNREACHABLE_PG, "--port-offset", "7700", tmp_path=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("PostgreSQL at 127.0.0.1:1/postgres (--postgres-dsn) is unreachable")


@pytest.mark.unit
def test_ports_are_checked_before_the_migrations(tmp_path: Path) -> None:
    # given the gateway's port taken, and a PostgreSQL that would fail the migrations
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 8001 + 7750))
        taken.listen()
        result = run_launcher(
            "--postgres-dsn", UNREACHABLE_PG, "--port-offset", "7750", tmp_path=tmp_path
        )
    # then the port is what is reported, before PostgreSQL was ever tried
    assert result.returncode == 1
    assert "ports in use (gateway :15751)" in result.stderr
    assert "PostgreSQL" not in result.stderr + result.stdout


@pytest.mark.unit
def test_consumer_group_chatter_stays_off_the_console() -> None:
    def line(level: str, message: str, logger: str = "aiokafka.consumer.group_coordinator") -> str:
        return json.dumps({"level": level, "message": message, "logger": logger})

    assert launcher._readable(line("WARNING", "Heartbeat failed for group g: rebalancing")) == ""
    assert launcher._readable(line("WARNING", "Rebalance in progress", "quimbi")) == ""
    assert launcher._readable(line("WARNING", "outbox relay lagging", "quimbi")) == (
        "WARNING outbox relay lagging"
    )
    assert launcher._readable(line("ERROR", "Heartbeat failed badly")) == (
        "ERROR Heartbeat failed badly"
    )


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_colours_only_on_a_terminal_and_never_with_no_color() -> None:
    assert launcher.use_colour(Tty(), {}) is True
    assert launcher.use_colour(Tty(), {"NO_COLOR": ""}) is False
    assert launcher.use_colour(io.StringIO(), {}) is False


@pytest.mark.unit
async def test_a_crash_looping_service_is_reported_with_its_last_log_lines(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(launcher, "CRASH_LOOP_EXITS", 2)
    suite = launcher.Suite(launcher.Options(log_dir=tmp_path, echo_logs=False))
    # given a service whose process dies at once (its module does not exist)
    suite.services = [launcher.Service("crasher", "quimbi_no_such_module", 1, None)]
    suite.check_ports = lambda: None  # type: ignore[method-assign]
    await suite.start()
    try:
        crash = await asyncio.wait_for(suite.crash_future(), timeout=30)
    finally:
        await suite.stop()
    # then it is reported once, with the tail of its log, and no longer restarted
    assert crash.name == "crasher"
    assert crash.code == 1
    report = crash.report()
    assert "crasher keeps crashing (exit code 1)" in report
    assert "No module named quimbi_no_such_module" in report
    assert suite.services[0].restarts == 2


@pytest.mark.unit
def test_ctrl_c_while_migrating_stops_at_once(tmp_path: Path) -> None:
    # given a "PostgreSQL" that accepts connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        dsn = f"postgresql://quimbi:quimbi@127.0.0.1:{silent.getsockname()[1]}/postgres"
        args = ("--postgres-dsn", dsn, "--port-offset", "7800")
        process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--no-seed", "--log-dir", str(tmp_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:  # when the migrations have started
                if "migrating databases" in line:
                    break
            # when Ctrl-C arrives while the connection hangs
            process.send_signal(signal.SIGINT)
            # then the launcher stops well before the connection's 10 s timeout
            code = process.wait(timeout=6)
        finally:
            process.kill()
            process.wait()
    output = process.stdout.read()
    assert code == 0
    assert "stopping" in output
    assert "Traceback" not in output


@pytest.mark.unit
@pytest.mark.parametrize("phase", ["readiness", "seeding"])
async def test_ctrl_c_while_waiting_for_readiness_or_seeding_stops_at_once(
    tmp_path: Path, monkeypatch: Any, phase: str
) -> None:
    reached = asyncio.Event()
    stopped: list[bool] = []

    async def hang() -> None:
        reached.set()
        await asyncio.Event().wait()

    class HangingSuite(launcher.Suite):
        """Databases and processes are not the point: the phase under test never ends."""

        def check_ports(self) -> None:
            return None

        async def prepare_databases(self) -> None:
            return None

        async def start(self) -> None:
            return None

        async def wait_ready(self, timeout: float = 120.0) -> None:
            if phase == "readiness":
                await hang()

        async def stop(self) -> None:
            stopped.append(True)

    async def hanging_seed(gateway: str, say: Any) -> list[tuple[str, str, str]]:
        await hang()
        return []

    monkeypatch.setattr(launcher, "Suite", HangingSuite)
    monkeypatch.setattr(launcher, "seed_demo_data", hanging_seed)
    opts = launcher.Options(log_dir=tmp_path, echo_logs=False, seed=phase == "seeding")
    running = asyncio.create_task(launcher.run(opts))
    # given the launcher in the phase that never ends
    await asyncio.wait_for(reached.wait(), timeout=10)
    # when Ctrl-C arrives
    signal.raise_signal(signal.SIGINT)
    # then it stops everything at once, and gives the terminal its Ctrl-C back
    assert await asyncio.wait_for(running, timeout=3) == 0
    assert stopped == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.unit
def test_bytecode_is_cached_under_local_only_when_the_environment_forbids_writing_it() -> None:
    assert launcher.bytecode_cache({}) is None
    assert launcher.bytecode_cache({"PYTHONDONTWRITEBYTECODE": "1"}) == (
        launcher.ROOT / ".local" / "pycache"
    )
    kept = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": "/elsewhere"}
    assert launcher.bytecode_cache(kept) is None


@pytest.mark.service
async def test_a_database_at_head_is_not_migrated_again() -> None:
    from quimbi_common.migrations import upgrade
    from quimbi_common.testing import create_database, drop_database, unique

    migrations = ROOT / "services" / "scoring" / "migrations"
    name = unique("test_launcher_head_")
    url = await create_database(name)
    try:
        assert not await launcher._at_head(migrations, url)  # empty: no alembic_version
        await asyncio.to_thread(upgrade, migrations, url, "0002")
        assert not await launcher._at_head(migrations, url)  # behind
        await asyncio.to_thread(upgrade, migrations, url)
        assert await launcher._at_head(migrations, url)
    finally:
        await drop_database(name)


@pytest.mark.unit
def test_split_runs_serve_and_consume_processes_and_the_gateway_reaches_only_serve() -> None:
    services = {
        s.name: s
        for s in launcher.build_services(
            launcher.Options(split=True, replicas={"scoring": 2, "scoring-consume": 2})
        )
    }
    for name, port in [("tickets", 8101), ("agents", 8102), ("sla", 8103), ("ai-proxy", 8105)]:
        assert (services[name].role, services[name].port) == ("serve", port)
        consume = services[f"{name}-consume"]
        assert (consume.role, consume.port, consume.service) == ("consume", port + 1000, name)
        assert consume.env["CONSUME_PORT"] == str(port + 1000)
        assert consume.database == services[name].database
    assert services["scoring#2"].role == "serve"
    assert services["scoring-consume#2"].role == "consume"
    assert services["scoring-consume#2"].port == 9104 + launcher.REPLICA_PORT_STEP
    gateway = services["gateway"].env
    assert gateway["SCORING_URL"] == "http://127.0.0.1:8104,http://127.0.0.1:8154"
    assert gateway["TICKETS_URL"] == "http://127.0.0.1:8101"
    assert services["gateway"].role == services["standin"].role == ""
    together = launcher.build_services(launcher.Options())
    assert all(s.role == "" for s in together)
    assert not any(s.name.endswith("-consume") for s in together)
