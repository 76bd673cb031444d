"""Atomic writes: nothing half-written under the final name, and a killed writer's leftovers cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from headmri.atomic import atomic_path, write_text


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.tsv"
    write_text("old\n", target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n" and _hidden(tmp_path) == []


def test_a_sigkilled_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "brain.nii.gz"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from headmri.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"), str(target)])
    assert killed.returncode == -9
    orphans = _hidden(tmp_path)
    assert len(orphans) == 1 and orphans[0].endswith(".tmp.nii.gz") and not target.exists()
    # a temporary of a writer that is still alive (this test's parent) is left alone
    live = tmp_path / f".brain.nii.gz.pid{os.getppid()}.abc123.tmp.nii.gz"
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.nii.gz.pid999999999.abc.tmp.nii.gz"  # another output's, left for its own writer
    other.write_bytes(b"not ours")
    write_text("done", target)
    assert target.read_text() == "done"
    assert _hidden(tmp_path) == sorted([live.name, other.name])
