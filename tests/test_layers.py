"""The tree keeps its floors: no import cycle, no import against the arrows, no module over 400 lines.

The import graph is read from the source (module-level imports, not those inside functions or under
``TYPE_CHECKING``); the read side is also imported in a fresh interpreter and its ``sys.modules`` listed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted((ROOT / "builder").rglob("*.py"))}
MODULES["medtrinity_25m"] = ROOT / "medtrinity_25m.py"


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _top_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: top level, in try/if blocks, not under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    body: list[ast.stmt] = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and not _type_checking(node):
            body += node.body + node.orelse
        elif isinstance(node, ast.Try):
            body += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return found


def imports(name: str) -> set[str]:
    """The project modules ``name`` imports when it is imported (a package's ``__init__`` counts, except the
    importing module's own ancestors, which Python has begun already)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _top_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            wanted = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                  else []))
            wanted = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in wanted:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                module = ".".join(parts[:i])
                if module in MODULES and module != name and not name.startswith(module + "."):
                    targets.add(module)
    return targets


GRAPH = {name: imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert _cycles() == []


#: (modules, what they must not import): the floors of ARCHITECTURE.md
FLOORS = [
    ("medtrinity_25m", "builder"),
    ("builder.dataset", "builder.pipeline"),
    ("builder.formats", "builder.pipeline"),
    ("builder.options", "builder.pipeline"),
    ("builder.errors", "builder.pipeline"),
    ("builder.registry", "builder.pipeline"),
    ("builder.layout", "builder.pipeline"),
    ("builder.pipeline.data", "builder.pipeline"),
    ("builder.pipeline.template", "builder.pipeline"),
    ("builder.pipeline.values", "builder.pipeline"),
    ("builder.pipeline.sources", "builder.pipeline.text"),
    ("builder.pipeline.sources", "builder.pipeline.process"),
    ("builder.pipeline.text", "builder.pipeline.process"),
    ("builder.pipeline.text", "builder.pipeline.build"),
    ("builder.pipeline.text", "builder.pipeline.engines"),
    ("builder.pipeline.proposers", "builder.pipeline.sources"),
    ("builder.pipeline.roi", "builder.pipeline.sources"),
]


@pytest.mark.parametrize(("floor", "above"), FLOORS)
def test_no_import_against_the_floors(floor: str, above: str) -> None:
    against = sorted(f"{name} -> {target}" for name, targets in GRAPH.items()
                     if name == floor or name.startswith(floor + ".")
                     for target in targets if target == above or target.startswith(above + ".")
                     if not (target == "builder.pipeline" and floor.startswith("builder.pipeline")))
    assert against == []


READ_SIDE = sorted(name for name in MODULES if name.startswith(("builder.dataset", "builder.formats"))) + [
    "builder.layout", "medtrinity_25m", "builder.cli"]


def test_the_read_side_loads_nothing_of_the_pipeline_in_a_fresh_interpreter() -> None:
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('builder.pipeline')))\n")
    loaded = {}
    for name in READ_SIDE:
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, cwd=ROOT,
                                check=True)
        loaded[name] = result.stdout.strip()
    assert {name: found for name, found in loaded.items() if found != "[]"} == {}


def test_no_module_is_over_400_lines() -> None:
    lines = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: count for name, count in lines.items() if count > 400} == {}
