"""Atomic outputs: nothing half-written, and the temporaries of a killed writer are cleaned by the next."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from overseer.io import atomic_dir, atomic_file, remove_stale_temps


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failed_block_leaves_neither_output_nor_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed half-way")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "metrics.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []


def test_replaces_previous_output_whole(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.bin").write_bytes(b"old")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.bin"]
    assert _hidden(tmp_path) == []


def _killed_writer(tmp_path: Path) -> None:
    """A child process that opens both kinds of temporary and is SIGKILLed inside the block."""
    script = (
        "import os, signal\n"
        "from overseer.io import atomic_dir, atomic_file\n"
        f"with atomic_dir({str(tmp_path / 'train')!r}) as d, atomic_file({str(tmp_path / 'm.json')!r}) as f:\n"
        "    (d / 'part').write_bytes(b'x'); f.write_text('{')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr


def test_next_writer_removes_what_a_killed_one_left(tmp_path: Path) -> None:
    _killed_writer(tmp_path)
    assert len(_hidden(tmp_path)) == 2  # the killed writer's temp folder and temp file
    with atomic_dir(tmp_path / "train") as tmp:
        (tmp / "model.bin").write_bytes(b"ok")
    with atomic_file(tmp_path / "m.json") as tmp:
        tmp.write_text("{}")
    assert _hidden(tmp_path) == []
    assert (tmp_path / "train" / "model.bin").read_bytes() == b"ok"


def test_live_writers_temporaries_and_other_files_are_kept(tmp_path: Path) -> None:
    live = tmp_path / f".train.tmp{os.getpid()}-abcd1234"  # this (live) process's
    live.mkdir()
    unrelated = tmp_path / ".train.keep"  # not a name this module makes
    unrelated.write_text("user's")
    other_target = tmp_path / ".eval.tmp999999999-abcd"  # another output's temporary
    other_target.mkdir()
    assert remove_stale_temps(tmp_path / "train") == []
    assert live.exists() and unrelated.exists() and other_target.exists()
