"""The repository a stage runs in: its root, its commit, content digests of its files.

Data and model modules use these without importing the tracking module (and MLflow with it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The user's repository root, also from inside a DVC temporary experiment workspace."""
    here = Path(start or os.getcwd()).resolve()
    parts = here.parts
    # dvc exp run --temp / --queue runs in <repo>/.dvc/tmp/exps/<...>: the store lives in <repo>
    for i in range(len(parts) - 1):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp":
            return Path(*parts[:i])
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() or (candidate / ".git").exists():
            return candidate
    return here


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit, or None outside git (or before the first commit)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or os.getcwd(), capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def file_digest(path: str | os.PathLike) -> str:
    """md5 of a file, or of a folder's sorted (relative path, file md5) list, as DVC hashes content."""
    target = Path(path)
    if target.is_file():
        digest = hashlib.md5()
        with target.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    entries = sorted(p for p in target.rglob("*") if p.is_file())
    digest = hashlib.md5()
    for entry in entries:
        digest.update(f"{entry.relative_to(target).as_posix()}:{file_digest(entry)}\n".encode())
    return digest.hexdigest() + ".dir"
