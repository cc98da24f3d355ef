"""The package's layout: folders import downward only, no folder circle, each sub-package says what it holds.

Read from the code's own imports (every ``import`` and ``from ... import``, top-level or inside a function),
so a new arrow that runs back up fails here before a reader trips over it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rqgmm"

# bottom floor first: a room may import its own floor's modules only within itself, and every lower floor
FLOORS = [
    {"errors"},
    {"console"},
    {"files", "runtime"},
    {"ids"},
    {"refit"},
    {"tokenizers"},
    {"store"},
    {"ctr", "retrieval", "data"},
    {"evaluate"},
    {"cli", "bench"},
    {"__init__", "__main__"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def room_of(module: str) -> str:
    """The room of a dotted module name under rqgmm: its sub-package, or the root module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def root_name(name: str) -> str:
    """The module behind ``from rqgmm import name``: a sub-package or root module, or a lazy export's home."""
    exports = next(node.value for node in ast.parse((PACKAGE / "__init__.py").read_text()).body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS")
    homes = dict(zip((k.value for k in exports.keys), (v.value for v in exports.values)))
    return homes.get(name, f"rqgmm.{name}")


def imported(path: Path) -> set[str]:
    """The rqgmm modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(root_name(alias.name) if base == "rqgmm" else base for alias in node.names)
    return {m for m in found if m == "rqgmm" or m.startswith("rqgmm.")}


def arrows() -> set[tuple[str, str]]:
    """(from room, to room) for every import between two different rooms."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        source = room_of(module_name(path)) if path.parent != PACKAGE else path.stem
        for module in imported(path):
            target = room_of(module)
            if target != source:
                out.add((source, target))
    return out


def test_every_room_has_a_floor():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py")}
    assert rooms <= set(FLOOR), f"place {sorted(rooms - set(FLOOR))} on a floor in FLOORS"


@pytest.mark.parametrize("arrow", sorted(arrows()), ids=lambda a: f"{a[0]}->{a[1]}")
def test_imports_run_downward_only(arrow):
    source, target = arrow
    assert FLOOR[target] < FLOOR[source], f"{source}/ imports {target}/, which is not on a lower floor"


def test_no_folder_imports_one_that_imports_it_back():
    edges = arrows()
    assert not {(a, b) for a, b in edges if (b, a) in edges}


def test_every_sub_package_opens_with_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 12, f"{init.parent.name}/__init__.py: say what lives there and what it may import"
