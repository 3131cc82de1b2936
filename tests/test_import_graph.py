"""Imports point one way: no cycle between the kiosk's packages.

Every ``import`` in ``device/`` and ``central/`` is read with :mod:`ast`, the lazy ones inside
functions included (a lazy import only hides a cycle from the interpreter, not from a reader),
the ones under ``if TYPE_CHECKING:`` left out (they never run). Each module is mapped to its
package (``device.camera.v4l2`` -> ``device.camera``); a top-level module such as
``device/config.py`` is a node of its own, and ``central`` is one node. A cycle between nodes
fails the test, each with the import lines that close it::

    device.config -> device.camera -> device.config
      device/config.py:32  from device.camera.focus import FOCUS_MODES
      device/camera/grabber.py:31  from device.config import CameraSection
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from support.kiosk import REPO

#: The code whose imports must point one way.
ROOTS = ("device", "central")
#: Cycles listed in a failure, at most (a tangle is listed in part; the first ones say enough).
MAX_CYCLES_SHOWN = 40


@dataclass(frozen=True)
class ImportLine:
    """One import statement of one module, as written: where it is, and which module it names."""

    module: str  # the importing module, e.g. "device.config"
    path: str  # its file, relative to the repository
    line: int
    text: str  # the statement's source, e.g. "from device.camera.focus import FOCUS_MODES"
    target: str  # the imported module, e.g. "device.camera.focus"


def module_name(path: Path) -> str:
    """``device/camera/v4l2.py`` -> ``device.camera.v4l2``; ``device/camera/__init__.py`` -> ``device.camera``."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def node_of(module: str) -> str:
    """The package a module counts for: ``device.camera.v4l2`` -> ``device.camera``, ``central.store``
    -> ``central``; a top-level module of ``device`` is its own node (``device.config``).

    >>> node_of("device.tools.bench.command"), node_of("device.config"), node_of("central.store"), node_of("device")
    ('device.tools', 'device.config', 'central', 'device')
    """
    parts = module.split(".")
    if parts[0] == "central":
        return "central"
    return ".".join(parts[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement of ``tree``, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _imports(child)


def _resolve(module: str, is_package: bool, statement: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement names (relative imports resolved)."""
    if not statement.level:
        return statement.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (statement.level - 1)]
    return ".".join(base + ([statement.module] if statement.module else []))


def import_lines(modules: dict[str, Path]) -> list[ImportLine]:
    """The imports of ``modules`` (name -> file) that name one of ``modules``."""
    found = []
    for module, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source, str(path))
        for statement in _imports(tree):
            if isinstance(statement, ast.Import):
                targets = [alias.name for alias in statement.names]
            else:
                base = _resolve(module, path.name == "__init__.py", statement)
                # "from device import config" imports the module device.config; "from device.config
                # import load" imports device.config and takes a name from it.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in statement.names]
            text = " ".join(ast.get_source_segment(source, statement).split())
            for target in dict.fromkeys(targets):
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # an attribute of a module: the module
                if target and target != module:
                    found.append(ImportLine(module, str(path.relative_to(REPO)), statement.lineno, text, target))
    return found


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for root in ROOTS for p in sorted((REPO / root).rglob("*.py"))}


def package_cycles(lines: list[ImportLine]) -> list[list[str]]:
    """Every simple cycle between nodes, each as its nodes in order, starting at its least node.

    >>> line = lambda a, b: ImportLine(a, "", 0, "", b)
    >>> package_cycles([line("device.a", "device.b.x"), line("device.b.y", "device.a"), line("device.b", "device.c")])
    [['device.a', 'device.b']]
    """
    graph: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        a, b = node_of(line.module), node_of(line.target)
        if a != b:
            graph[a].add(b)
    cycles: list[list[str]] = []
    nodes = sorted(set(graph) | {b for targets in graph.values() for b in targets})
    for start in nodes:
        # Cycles whose least node is ``start``: walk only through nodes after it.
        stack = [(start, [start])]
        while stack and len(cycles) < MAX_CYCLES_SHOWN:
            node, path = stack.pop()
            for nxt in sorted(graph[node], reverse=True):
                if nxt == start:
                    cycles.append(path)
                elif nxt > start and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(cycles, key=lambda c: (len(c), c))


def describe(cycle: list[str], lines: list[ImportLine]) -> str:
    """A cycle and the import lines of each of its steps."""
    out = [" -> ".join([*cycle, cycle[0]])]
    for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        for line in lines:
            if node_of(line.module) == a and node_of(line.target) == b:
                out.append(f"  {line.path}:{line.line}  {line.text}")
    return "\n".join(out)


def test_no_import_cycle_between_packages():
    lines = import_lines(project_modules())
    cycles = package_cycles(lines)
    assert not cycles, f"{len(cycles)} import cycle(s) between packages:\n\n" + "\n\n".join(describe(c, lines) for c in cycles)


def test_the_config_imports_nothing_of_the_camera_vision_or_daemon():
    # kvmd's rule: the validators import nothing of the daemon. Checking a camera source or a
    # symbology must not load OpenCV or numpy into `kiosk status` (issue 21).
    below = ("device.camera", "device.vision", "device.daemon", "device.outputs", "device.cli")
    lines = [line for line in import_lines(project_modules()) if line.module == "device.config" and node_of(line.target) in below]
    assert lines == [], "\n".join(f"{line.path}:{line.line}  {line.text}" for line in lines)


def test_the_walk_sees_lazy_imports_and_skips_type_checking_ones():
    # The walk itself must be able to see a cycle: one held by a lazy import inside a function.
    lazy = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from device.b import B\ndef f():\n    from device.b import g\n"
    tree = ast.parse(lazy)
    names = [s.module for s in _imports(tree)]
    assert names == ["typing", "device.b"]


def test_a_cycle_is_named_with_the_lines_that_close_it():
    lines = [
        ImportLine("device.config", "device/config.py", 32, "from device.camera.focus import FOCUS_MODES", "device.camera.focus"),
        ImportLine("device.camera.grabber", "device/camera/grabber.py", 31, "from device.config import CameraSection", "device.config"),
    ]
    (cycle,) = package_cycles(lines)
    assert describe(cycle, lines) == (
        "device.camera -> device.config -> device.camera\n"
        "  device/camera/grabber.py:31  from device.config import CameraSection\n"
        "  device/config.py:32  from device.camera.focus import FOCUS_MODES"
    )


def test_every_module_is_seen():
    # A module the walk skipped (a parse failure, a root not walked) would hide its cycles.
    modules = project_modules()
    assert {"device.config", "device.camera", "device.cli.status", "central.server"} <= set(modules)
    lines = import_lines(modules)
    assert any(line.module == "device.cli.queue" for line in lines)
