"""The code passes the linter configured in pyproject.toml ([tool.ruff]): pyflakes, pycodestyle, import
order and bug-prone patterns (ruff comes with the test extra; envs/headmri.yaml pins its version)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ruff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_code_passes_ruff():
    done = ruff("check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_reads_the_projects_configuration_and_catches_a_defect(tmp_path):
    """The check above can fail: the same configuration flags an unused import and an unsorted block."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n")
    done = ruff("check", "--no-cache", "--config", str(REPO / "pyproject.toml"), str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert "F401" in done.stdout and "I001" in done.stdout, done.stdout
