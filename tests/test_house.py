"""The house rules (issue 28), checked on the code as it stands: no function over 45 lines, no module over 400, and
no import cycle between edgecl's modules at import time (imports inside functions and under TYPE_CHECKING are
deferred by design and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the installed package and where package-dir maps its two other parts from (pyproject.toml)
PACKAGES = {"edgecl": ROOT / "edgecl", "edgecl.export": ROOT / "export",
            "edgecl.device_profiles": ROOT / "device_profiles"}
MAX_FUNCTION_LINES = 45
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the installed package."""
    out = {}
    for base, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([base, *parts])] = path
    return out


def _imported_at_load(name: str, path: Path, known: set[str]) -> set[str]:
    """The edgecl modules that module `name` imports at its top level."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_function_is_longer_than_45_lines_and_no_module_longer_than_400() -> None:
    long_functions, long_modules = [], []
    for name, path in _modules().items():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{name} ({len(source.splitlines())} lines)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} ({lines} lines)")
    assert not long_functions, long_functions
    assert not long_modules, long_modules


def test_no_import_cycle_between_modules_at_load_time() -> None:
    modules = _modules()
    graph = {name: _imported_at_load(name, path, set(modules)) for name, path in modules.items()}

    state: dict[str, str] = {}  # absent: not seen; "open": on the current path; "done"
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                loop = path[path.index(child) :] + [child]
                # a package importing its own submodule (and that submodule its package) is how packages are built
                steps = zip(loop, loop[1:], strict=False)
                if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in steps):
                    cycles.append(" -> ".join(loop))
            elif child not in state:
                visit(child, [*path, child])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
    assert graph["edgecl.cli"], "the graph sees imports (edgecl.cli imports its command modules)"
