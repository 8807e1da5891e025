"""The direction of imports between the project's packages, checked on the source (function-level imports too).

Floors: ``crossfuse.registry`` (-1, imports nothing of the project) < ``fusion``, ``data`` (0) < ``models`` (1) <
``engine`` (2) < ``transfer``, ``merging``, ``deploy`` (3) < ``crossfuse.cli`` and ``crossfuse.commands``, the root
scripts and ``benchmarks`` (4). A module imports its own floor or lower, never higher; no library module imports an
entry script; no import cycles between library modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = {"crossfuse.registry": -1, "fusion": 0, "data": 0, "models": 1, "engine": 2, "transfer": 3, "merging": 3,
          "deploy": 3, "crossfuse": 4}
ENTRY_SCRIPTS = {p.stem for p in ROOT.glob("*.py")}


def floor_of(module: str) -> int | None:
    """The floor of a dotted module name: the longest prefix in FLOORS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in FLOORS:
            return FLOORS[name]
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (relative imports resolved)."""
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def library_modules() -> dict[str, Path]:
    packages = ("fusion", "data", "models", "engine", "transfer", "merging", "deploy", "crossfuse")
    return {module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def test_no_upward_imports_and_no_entry_script_imports():
    problems = []
    for mod, path in library_modules().items():
        own = floor_of(mod)
        for imp in imports_of(path):
            top = imp.split(".")[0]
            if top in ENTRY_SCRIPTS and top not in FLOORS:
                problems.append(f"{mod} imports the entry script {top}.py")
            other = floor_of(imp)
            if other is not None and other > own:
                problems.append(f"{mod} (floor {own}) imports {imp} (floor {other})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    known = library_modules()
    graph = {m: {r for i in imports_of(p) if (r := resolve(i, known)) and r != m} for m, p in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The rule is only as good as its parser: an import inside a function, or a relative one, counts."""
    (tmp_path / "engine").mkdir()
    source = tmp_path / "engine" / "lazy.py"
    source.write_text("def f():\n    from transfer.contrastive import clip_loss\n    from .tasks import Task\n")
    found = imports_of(source, tmp_path)
    assert {"transfer.contrastive", "engine.tasks"} <= found
    assert floor_of("transfer.contrastive") > floor_of("engine.lazy")
