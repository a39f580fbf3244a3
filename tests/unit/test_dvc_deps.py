"""Every module a stage runs is one of its DVC deps, so that a code change re-runs what it must.

The imports are read statically (``ast``) from the stage script (module level plus the function
that handles the stage's ``foreach`` key) and followed transitively through ``overseer``,
function-level imports included. ``overseer.tracking`` is not followed: it only logs the run and
cannot change a stage's outputs (listing it would re-run the whole pipeline on a logging change).
Package ``__init__`` files without imports carry no code and are not required either.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
NOT_FOLLOWED = {"overseer.tracking", "overseer.settings"}  # cannot change outputs


def module_file(name: str) -> Path | None:
    """The source file of ``overseer`` module ``name``, or None for anything else."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """``overseer`` modules imported anywhere in ``tree`` (``from a import b`` adds ``a.b`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    return {name for name in found if name.split(".")[0] == "overseer" and module_file(name)}


def with_parents(name: str) -> set[str]:
    """``a.b.c`` -> {a, a.b, a.b.c}: importing a module runs its packages' ``__init__`` first."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


@cache
def closure(name: str) -> frozenset[str]:
    """``name`` and every ``overseer`` module it imports, transitively."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in NOT_FOLLOWED:
            continue
        path = module_file(current)
        package = current if path.name == "__init__.py" else current.rpartition(".")[0]
        for found in imported_modules(ast.parse(path.read_text()), package):
            todo.extend(with_parents(found) - seen)
    return frozenset(seen)


def stage_modules(script: Path, key: str | None) -> set[str]:
    """Modules the stage script runs for ``key``: its module-level imports and those of the function
    named ``key`` (the ``foreach`` key; every stage script dispatches on a function of that name)."""
    tree = ast.parse(script.read_text())
    roots: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            roots |= imported_modules(node, "")
        elif isinstance(node, ast.FunctionDef) and (key is None or node.name in (key, "main")):
            roots |= imported_modules(node, "")
    modules: set[str] = set()
    for root in roots:
        for parent in with_parents(root):
            modules |= closure(parent)
    return modules


def needs_listing(name: str) -> bool:
    path = module_file(name)
    if name in NOT_FOLLOWED:
        return False
    if path.name == "__init__.py":
        return any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(ast.parse(path.read_text())))
    return True


def expanded_stages() -> list[tuple[str, str, str | None, list[str]]]:
    """(stage name, script, foreach key, deps) of every stage in dvc.yaml, ``foreach`` expanded."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = []
    for name, spec in stages.items():
        items = spec["foreach"].items() if "foreach" in spec else [(None, None)]
        body = spec.get("do", spec)
        for key, item in items:

            def expand(text: str, key: str | None = key, item: dict | None = item) -> str:
                text = text.replace("${key}", key or "")
                return re.sub(r"\$\{item\.(\w+)\}", lambda m: str((item or {})[m.group(1)]), text)

            script = re.search(r"python (stages/\S+\.py)", body["cmd"]).group(1)
            deps = [expand(d) for d in body.get("deps", [])]
            out.append((f"{name}@{key}" if key else name, script, key, deps))
    return out


def declared_paths() -> set[str]:
    """Every path dvc.yaml names as a dep, out or metric, ``foreach`` expanded."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names: set[str] = set()
    for spec in stages.values():
        body = spec.get("do", spec)
        entries = [*body.get("deps", []), *body.get("outs", []), *body.get("metrics", [])]
        for key, item in spec["foreach"].items() if "foreach" in spec else [(None, {})]:
            for entry in entries:
                text = next(iter(entry)) if isinstance(entry, dict) else entry
                text = text.replace("${key}", key or "")
                names.add(re.sub(r"\$\{item\.(\w+)\}", lambda m, item=item: str(item[m.group(1)]), text))
    return names


STAGES = expanded_stages()


@pytest.mark.parametrize(("stage", "script", "key", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_cover_every_module_it_runs(stage: str, script: str, key: str | None, deps: list[str]) -> None:
    assert script in deps, f"{stage}: its own script {script} is not a dep"
    dep_paths = [ROOT / d for d in deps]
    missing = []
    for name in sorted(stage_modules(ROOT / script, key)):
        path = module_file(name)
        if needs_listing(name) and not any(path == d or d in path.parents for d in dep_paths):
            missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, f"{stage} runs these modules but dvc.yaml does not list them as deps: {missing}"


def test_path_catalogue_agrees_with_dvc_yaml() -> None:
    """Each path of ``overseer.paths`` is one dvc.yaml declares, a folder of declared files or a file in one."""
    from overseer import paths

    declared = {Path(p) for p in declared_paths()}
    catalogue = [getattr(fp, prop) for fp in paths.FAMILY_PATHS.values() for prop in dir(paths.FamilyPaths)
                 if isinstance(getattr(paths.FamilyPaths, prop), property)]  # fmt: skip
    catalogue += [v for k, v in vars(paths).items() if k.isupper() and isinstance(v, Path)]
    unknown = [p for p in catalogue if not any(p == d or p in d.parents or d in p.parents for d in declared)]
    assert not unknown, f"paths.py names paths dvc.yaml does not declare: {unknown}"


def test_closure_follows_function_level_imports(tmp_path: Path) -> None:
    """The walker sees imports inside functions (stages import lazily) and follows them through overseer."""
    mods = stage_modules(ROOT / "stages/train_rf.py", None)
    assert "overseer.seismic.forest" in mods  # imported inside main()
    assert "overseer.metrics" in mods  # imported by forest, one level down
    assert "overseer.tracking" in mods and "overseer.repo" not in closure("overseer.tracking") - {"overseer.tracking"}


def test_git_tracked_reports_persist_across_a_failing_run() -> None:
    """Every ``cache: false`` output is ``persist: true``: DVC must not delete the last good report."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    not_persisted = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind, []):
                if isinstance(entry, dict):
                    ((path, options),) = entry.items()
                    if options.get("cache") is False and not options.get("persist"):
                        not_persisted.append(f"{name}: {path}")
    assert not_persisted == []
