"""The layers of docs/design.md import only downwards: a module-level import of a higher layer
would make a lower one load (and depend on) the code built on it. Imports inside functions are
left to review: the design says when they are allowed, and each says why where it stands."""

from __future__ import annotations

import ast
from pathlib import Path

import django_jobs

PACKAGE = Path(django_jobs.__file__).parent

#: The modules docs/design.md places, by layer ("Layers that import only downwards").
LAYERS = {
    1: ["conf", "clock", "exceptions", "options", "payload", "retry", "schedule", "signals",
        "humanize", "ids", "eager", "version"],
    2: ["models"],
    3: ["jobtypes", "locks", "enqueuing", "pruning"],
    4: ["context", "execution", "monitor", "outcomes", "runner"],
    5: ["worker"],
    6: ["control"],
    7: ["admin", "management", "backends", "testing", "metrics"],
}
LAYER = {name: layer for layer, names in LAYERS.items() for name in names}


def _module_level_imports(path: Path, package: list[str]) -> list[str]:
    """Modules of this package that ``path`` imports when it loads (``TYPE_CHECKING`` blocks
    and functions left out)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - node.level + 1]
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found += [".".join([*base, name]) for name in names]
        elif node.module and node.module.startswith("django_jobs."):
            found.append(node.module)
    return found


def test_no_module_imports_a_higher_layer_when_it_loads():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        layer = LAYER.get(parts[1]) if len(parts) > 1 else None
        if layer is None:
            continue
        for target in _module_level_imports(path, list(parts[:-1])):
            target_parts = target.split(".")
            other = LAYER.get(target_parts[1]) if len(target_parts) > 1 else None
            if other is not None and other > layer:
                upward.append(f"{'.'.join(parts)} (layer {layer}) imports {target} "
                              f"(layer {other})")
    assert not upward, "\n".join(upward)
