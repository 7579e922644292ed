"""The layers point down: no module of src/podium imports a layer above its own.

Every import counts, at module level, inside functions and under TYPE_CHECKING alike.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "podium"

# Top-level modules any layer may use; they import nothing of podium but each other.
LEAVES = frozenset({"clock", "errors", "events", "loop", "redact", "supervisor"})

_BELOW_ENGINE = frozenset({"model", "plan", "steps", "store", "bus", "control", "settings"})
_BELOW_API = _BELOW_ENGINE | {"engine", "check", "observe"}

# Each layer (a package, or a top-level module) and the layers below it that it may import.
# "podium" is the package itself: the SDK of src/podium/__init__.py, above every layer but cli.
ALLOWED: dict[str, frozenset[str]] = {
    "model": frozenset(),
    "plan": frozenset({"model"}),
    "steps": frozenset({"model"}),
    "store": frozenset({"model"}),
    "bus": frozenset(),
    # plan: admission sizes a whole run from its plan's peak demand before it starts.
    "control": frozenset({"model", "plan", "store"}),
    "settings": frozenset({"model", "control"}),
    "check": frozenset({"model", "plan", "steps"}),
    "engine": _BELOW_ENGINE,
    "observe": _BELOW_API - {"observe"},
    "api": _BELOW_API,
    # sdk: workflows defined in Python, with the rights of the SDK it belongs to.
    "sdk": _BELOW_API,
    "podium": _BELOW_API | {"sdk"},
    "cli": _BELOW_API | {"api", "podium", "sdk"},
}

# Pairs of modules (paths under src/podium) that must not import each other's way.
FORBIDDEN_MODULES = {("engine/host.py", "engine/engine.py")}
# Known breaches, each to be fixed (the test fails once one is, so the set only shrinks).
KNOWN: set[tuple[str, str]] = set()


def _layer_of_path(rel: Path) -> str:
    if len(rel.parts) > 1:
        return rel.parts[0]
    return "podium" if rel.name == "__init__.py" else rel.stem


def _layer_of_module(name: str) -> str:
    """`podium.model.workflow` -> model; `podium` alone -> the SDK, "podium"."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "podium"


def _is_module(name: str) -> bool:
    return (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every podium import in `path`; `from podium import x`
    counts as importing `podium.x` when x is a module (else the SDK's `podium`)."""
    rel = path.relative_to(SRC)
    package = ["podium", *rel.parts[:-1]]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = module == "podium" and _is_module(alias.name)
                found.append((node.lineno, f"podium.{alias.name}" if sub else module))
    yield from ((line, m) for line, m in found if m.split(".")[0] == "podium")


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _layer_breaches() -> list[str]:
    breaches = []
    for path in _sources():
        rel = path.relative_to(SRC)
        layer = _layer_of_path(rel)
        allowed = LEAVES | {layer} | ALLOWED.get(layer, frozenset())
        for line, module in _imports(path):
            target = _layer_of_module(module)
            if target not in allowed:
                breaches.append(f"{rel.as_posix()}:{line}: {layer} imports {module} ({target})")
    return breaches


def _module_path(module: str) -> str:
    return "/".join(module.split(".")[1:]) + ".py"


def _module_breaches() -> set[tuple[str, str]]:
    found = set()
    for importer, imported in FORBIDDEN_MODULES:
        for _, module in _imports(SRC / importer):
            if _module_path(module) == imported:
                found.add((importer, imported))
    return found


def test_every_module_belongs_to_a_known_layer() -> None:
    layers = {_layer_of_path(p.relative_to(SRC)) for p in _sources()}
    assert layers <= LEAVES | set(ALLOWED), sorted(layers - LEAVES - set(ALLOWED))


def test_no_module_imports_a_layer_above_its_own() -> None:
    breaches = _layer_breaches()
    assert not breaches, "imports of a higher layer:\n" + "\n".join(breaches)


def test_leaf_modules_import_no_layer() -> None:
    for leaf in sorted(LEAVES):
        imported = {_layer_of_module(m) for _, m in _imports(SRC / f"{leaf}.py")}
        assert imported <= LEAVES, f"{leaf}.py imports {sorted(imported - LEAVES)}"


def test_the_step_host_does_not_import_the_engine() -> None:
    unexpected = _module_breaches() - KNOWN
    assert not unexpected, f"forbidden imports: {sorted(unexpected)}"
    fixed = KNOWN - _module_breaches()
    assert not fixed, f"fixed, so remove them from KNOWN: {sorted(fixed)}"
