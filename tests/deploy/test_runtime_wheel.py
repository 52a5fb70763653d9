"""The quimbi-common wheel the images install carries no test helpers, and nothing a service runs
imports them (it would fail in the image, where they are absent)."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_ONLY = ("testing", "faultproxy")

pytestmark = pytest.mark.unit


def test_the_common_wheel_leaves_out_the_test_helpers(tmp_path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is on PATH wherever the workspace is built"
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "-o", str(tmp_path), str(ROOT / "libs" / "common")],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("quimbi_common-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # then the runtime modules are there and the test helpers are not
    assert "quimbi_common/outbox.py" in names
    for module in TEST_ONLY:
        assert f"quimbi_common/{module}.py" not in names


def test_no_runtime_module_imports_a_test_helper() -> None:
    names = "|".join(TEST_ONLY)
    pattern = re.compile(rf"(quimbi_common|from\s+\.+)\s*(\.|\s+import\s+)?\s*({names})\b")
    sources = [*ROOT.glob("libs/common/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    assert sources
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if path.stem not in TEST_ONLY and pattern.search(path.read_text())
    ]
    assert offenders == []
