"""The code deps of each DVC stage, from a static import graph: ``python -m pipeline.stage_deps --check``.

DVC reruns a stage when one of its ``deps`` changes. So a stage must list every project module that its entry
module (``python -m pipeline.<stage>``) imports, directly or through other modules. A module that is left
out can change without the stage rerunning, and then a stale output is served from the cache.

This module reads the source with ``ast`` and never imports it. It follows ``liveness.*`` and ``pipeline.*``
imports anywhere in a file, including those inside functions, and counts ``from package import name`` as an
import of the submodule when ``name`` is one. Importing a module runs its packages' ``__init__.py``, so those
count too. Packages that load their names on first use (PEP 562: a module-level ``__getattr__`` and a table
of name -> module strings, as ``liveness.bundle`` and ``liveness.model`` have) are read too: ``from package
import Name`` counts as an import of the module the table names for ``Name``, and a plain ``import package``
as an import of every module in the table. Other imports made from strings (``importlib.import_module``
elsewhere) are not seen; the project has none.

``--write`` puts the result into ``dvc.yaml``. Each stage gets its entry module first, then the other files
it imports, sorted. A package folder replaces its files when the stage imports all of them. Deps outside the
code (data, model files, reports) are kept as they are, after the code. ``--check`` exits 1 and names each
stage whose deps miss an imported module, or list code that the stage does not import.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Where each project package lives, relative to the repository root. Only imports of these are followed.
PACKAGES = {"liveness": "src/liveness", "pipeline": "pipeline"}
CODE_ROOTS = ("src/", "pipeline/")  # a dep under one of these is code: --write replaces it, --check judges it
DVC_FILE = "dvc.yaml"


@dataclass(frozen=True)
class Drift:
    """How one stage's code deps differ from its import graph (paths relative to the repository root)."""

    stage: str
    missing: tuple[str, ...]  # imported files that no dep covers
    extra: tuple[str, ...]  # code deps that cover no imported file

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)


# ----------------------------------------------------------------------------------------------- import graph


def module_file(module: str, root: Path) -> Path | None:
    """The source file of a project module (``pkg/mod.py`` or ``pkg/mod/__init__.py``), or None if not ours."""
    top, _, rest = module.partition(".")
    if top not in PACKAGES:
        return None
    base = root / PACKAGES[top]
    if rest:
        base = base.joinpath(*rest.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs each enclosing package first."""
    parts = module.split(".")
    return [".".join(parts[: index + 1]) for index in range(len(parts))]


def lazy_exports(source: str) -> dict[str, str]:
    """A package's names loaded on first use (PEP 562), name -> module, read from its ``__init__.py`` text.

    Empty unless the module defines ``__getattr__`` at its top level. The table is every top-level dict whose
    keys are names and whose values are project module names, written out (``{"Name": "pkg.mod"}``) or spread
    from ``dict.fromkeys((names...), "pkg.mod")``.
    """
    tree = ast.parse(source)
    if not any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body):
        return {}
    exports: dict[str, str] = {}
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Dict):
            continue
        table: dict[str, str] = {}
        for key, item in zip(value.keys, value.values, strict=True):
            if key is None:  # **dict.fromkeys((names...), "module")
                table.update(_fromkeys(item))
            elif isinstance(key, ast.Constant) and isinstance(item, ast.Constant):
                table[str(key.value)] = str(item.value)
        exports.update({name: target for name, target in table.items() if target.partition(".")[0] in PACKAGES})
    return exports


def _fromkeys(node: ast.expr) -> dict[str, str]:
    """``dict.fromkeys((names...), "module")`` as a dict; {} for any other expression."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fromkeys"
            and len(node.args) == 2 and isinstance(node.args[0], (ast.Tuple, ast.List))
            and isinstance(node.args[1], ast.Constant)):
        return {}
    return {str(name.value): str(node.args[1].value) for name in node.args[0].elts if isinstance(name, ast.Constant)}


def imported_names(source: str, module: str, is_package: bool,
                   exports_of: Callable[[str], dict[str, str]] = lambda package: {}) -> set[str]:
    """Every module name an import statement anywhere in ``source`` (the text of ``module``) may load.

    ``from x import y`` yields both ``x`` and ``x.y``: the caller keeps ``x.y`` only when it is a module. When
    ``exports_of(x)`` (a package's ``lazy_exports``) names ``y``, it also yields the module that loads ``y``;
    ``import x`` yields every module of ``exports_of(x)``.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                names.update(exports_of(alias.name).values())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                names.add(base)
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*")
            exports = exports_of(base) if base else {}
            names.update(exports[alias.name] for alias in node.names if alias.name in exports)
    return names


def import_closure(entry: str, root: Path) -> set[str]:
    """Files (relative to ``root``, POSIX) of ``entry`` and every project module it imports, transitively."""
    if module_file(entry, root) is None:
        raise ValueError(f"entry module {entry!r} has no source file under {root}; check the stage's cmd")
    seen: set[str] = set()
    pending = _parents(entry)
    files: set[str] = set()

    @functools.cache
    def exports_of(package: str) -> dict[str, str]:
        path = module_file(package, root)
        return lazy_exports(path.read_text()) if path is not None and path.name == "__init__.py" else {}

    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, root)
        if path is None:
            continue
        files.add(path.relative_to(root).as_posix())
        for name in imported_names(path.read_text(), module, path.name == "__init__.py", exports_of):
            if module_file(name, root) is not None:
                pending.extend(_parents(name))
    return files


# ---------------------------------------------------------------------------------------------- deps from files


def _python_files(folder: Path, root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in folder.rglob("*.py") if "__pycache__" not in path.parts}


def covering_deps(files: set[str], root: Path, entry_file: str) -> list[str]:
    """The fewest paths that cover exactly ``files``: a folder stands for its files when all are in ``files``.

    ``entry_file`` comes first, as the stage's own script, unless a listed folder already holds it.
    """
    remaining = set(files)
    folders: list[str] = []
    candidates = sorted({Path(name).parent for name in files}, key=lambda folder: len(folder.parts))
    for folder in candidates:
        if any(folder.as_posix() == chosen or folder.as_posix().startswith(chosen + "/") for chosen in folders):
            continue
        inside = _python_files(root / folder, root)
        if inside and inside <= files:
            folders.append(folder.as_posix())
            remaining -= inside
    first = [entry_file] if entry_file in remaining else []
    return first + sorted([*folders, *(remaining - set(first))])


def is_code(dep: str) -> bool:
    return dep.startswith(CODE_ROOTS) or dep.endswith(".py")


def _covers(dep: str, file: str) -> bool:
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def drift(stage: str, deps: list[str], files: set[str]) -> Drift:
    """Which imported ``files`` the stage's ``deps`` miss, and which of its code deps cover none of them."""
    missing = sorted(file for file in files if not any(_covers(dep, file) for dep in deps))
    extra = sorted(dep for dep in deps if is_code(dep) and not any(_covers(dep, file) for file in files))
    return Drift(stage, tuple(missing), tuple(extra))


# -------------------------------------------------------------------------------------------------- dvc.yaml


def entry_module(stage: str, cmd: str | list) -> str:
    """The module a stage runs: ``python -m pipeline.train --no-progress`` -> ``pipeline.train``."""
    words = shlex.split(cmd) if isinstance(cmd, str) else []
    if len(words) >= 3 and Path(words[0]).name.startswith("python") and words[1] == "-m":
        return words[2]
    raise ValueError(f"stage {stage!r}: cmd {cmd!r} is not `python -m <module> ...`; "
                     f"pipeline.stage_deps maps only such commands to their code")


def stage_graphs(pipeline: dict, root: Path) -> dict[str, tuple[str, set[str]]]:
    """Per stage of a parsed dvc.yaml: its entry file and the files its entry module imports."""
    graphs = {}
    for stage, spec in pipeline.get("stages", {}).items():
        entry = entry_module(stage, spec.get("cmd"))
        graphs[stage] = (module_file(entry, root).relative_to(root).as_posix(), import_closure(entry, root))
    return graphs


def _dep_paths(spec: dict) -> list[str]:
    return [dep if isinstance(dep, str) else next(iter(dep)) for dep in spec.get("deps", [])]


def generated_deps(pipeline: dict, root: Path) -> dict[str, list[str]]:
    """Per stage: the code deps from its import graph, then its existing non-code deps in their order."""
    result = {}
    for stage, (entry_file, files) in stage_graphs(pipeline, root).items():
        kept = [dep for dep in _dep_paths(pipeline["stages"][stage]) if not is_code(dep)]
        result[stage] = covering_deps(files, root, entry_file) + kept
    return result


def check(pipeline: dict, root: Path) -> list[Drift]:
    """Every stage whose deps in the parsed dvc.yaml drift from its import graph."""
    found = []
    for stage, (_, files) in stage_graphs(pipeline, root).items():
        stage_drift = drift(stage, _dep_paths(pipeline["stages"][stage]), files)
        if stage_drift:
            found.append(stage_drift)
    return found


def rewrite_deps(text: str, deps: dict[str, list[str]]) -> str:
    """``text`` (a dvc.yaml) with each named stage's ``deps:`` items replaced; comments and the rest kept.

    Expects the layout this repository uses: stages indented 2 spaces, their keys 4, dep items 6 (``- path``).
    """
    lines = text.splitlines(keepends=True)
    for stage, paths in deps.items():
        start = next((i for i, line in enumerate(lines) if re.fullmatch(rf"  {re.escape(stage)}:\s*", line)), None)
        if start is None:
            raise ValueError(f"stage {stage!r} not found at two spaces' indent in {DVC_FILE}")
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= 2), len(lines))
        head = next((i for i in range(start + 1, end) if re.fullmatch(r"    deps:\s*", lines[i])), None)
        if head is None:
            raise ValueError(f"stage {stage!r} has no `    deps:` block in {DVC_FILE}; add one, then --write")
        stop = head + 1
        while stop < end and re.match(r"      - ", lines[stop]):
            stop += 1
        lines[head + 1 : stop] = [f"      - {path}\n" for path in paths]
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or write each dvc.yaml stage's code deps from its imports.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if any stage's deps drift from its imports")
    action.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    arguments = parser.parse_args(argv)
    path = arguments.root / DVC_FILE
    text = path.read_text()
    pipeline = yaml.safe_load(text)
    if arguments.write:
        deps = generated_deps(pipeline, arguments.root)
        updated = rewrite_deps(text, deps)
        if _dep_paths_by_stage(yaml.safe_load(updated)) != deps:
            raise RuntimeError(f"rewriting {path} did not give the intended deps; edit it by hand")
        path.write_text(updated)
        print(f"{path}: code deps of {len(deps)} stages written from their import graphs")
        return 0
    found = check(pipeline, arguments.root)
    for stage_drift in found:
        for file in stage_drift.missing:
            print(f"{stage_drift.stage}: imports {file}, which no dep covers")
        for dep in stage_drift.extra:
            print(f"{stage_drift.stage}: dep {dep} is code the stage does not import")
    if found:
        print(f"{path} drifted from the import graph: run `python -m pipeline.stage_deps --write`")
        return 1
    print(f"{path}: every stage's deps cover the modules it imports")
    return 0


def _dep_paths_by_stage(pipeline: dict) -> dict[str, list[str]]:
    return {stage: _dep_paths(spec) for stage, spec in pipeline.get("stages", {}).items()}


if __name__ == "__main__":
    sys.exit(main())
