"""Package boundaries from DESIGN §2, checked on the source: policies and analytics import nothing
from proxy or dashboards, dashboards nothing from proxy, and nothing imports app.py except the
`warden serve` command, inside a function. Imports by name (`importlib`) count as imports, and services
are reached through the one typed object under `app.extensions["warden"]`, never a string key of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"proxy", "policies", "analytics", "dashboards", "migrations", "app"}
FORBIDDEN = {
    "policies": {"proxy", "dashboards", "app"},
    "analytics": {"proxy", "dashboards", "app"},
    "dashboards": {"proxy", "app"},
    "proxy": {"dashboards", "app"},
}
# The command line sits above the app factory: it may import app.py, but only inside a function, so
# that the gunicorn master (and every other command) never loads what app.py loads.
LAZY_ALLOWED = {"proxy/cli": {"app"}}
SERVICES_KEY = "warden"


def _module_level(tree: ast.Module) -> set[ast.AST]:
    """Import nodes outside any function (including those under `if` and `try` at the top)."""
    nested: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nested |= set(ast.walk(node)) - {node}
    return {node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)} - nested


def _import_module_target(node: ast.AST) -> str | None:
    """The module named by `importlib.import_module("x")`, `import_module("x")` or `__import__("x")`."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    arg = node.args[0]
    if name in {"import_module", "__import__"} and isinstance(arg, ast.Constant):
        return str(arg.value)
    return None


def imported_packages(path: Path, *, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    top = _module_level(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if module_level_only and node not in top:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif (target := _import_module_target(node)) is not None:
            found.add(target.split(".")[0])
    return found


def _offences(package: str, path: Path) -> set[str]:
    relative = path.relative_to(ROOT).as_posix()
    lazy = set().union(
        *(names for prefix, names in LAZY_ALLOWED.items() if relative.startswith(prefix + "/"))
    )
    anywhere = imported_packages(path) & (FORBIDDEN[package] - lazy)
    return anywhere | (imported_packages(path, module_level_only=True) & FORBIDDEN[package])


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_boundaries(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_offences(package, path))
        for path in (ROOT / package).rglob("*.py")
        if _offences(package, path)
    }
    assert offenders == {}


def _sources() -> list[Path]:
    return [
        ROOT / "app.py",
        *(path for package in sorted(FORBIDDEN) for path in (ROOT / package).rglob("*.py")),
    ]


def test_no_project_imports_by_name() -> None:
    """importlib would hide an import from the boundary check above."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            target
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if (target := _import_module_target(node)) is not None and target.split(".")[0] in PROJECT
        )
        for path in _sources()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def _extension_keys(tree: ast.Module) -> list[str]:
    """Keys used on any `<x>.extensions[...]` or `<x>.extensions.get(...)`; `?` for a non-literal key."""
    keys = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "extensions"
        ):
            key = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"get", "setdefault", "pop"}
            and isinstance(node.func.value, ast.Attribute)
            and node.func.value.attr == "extensions"
            and node.args
        ):
            key = node.args[0]
        else:
            continue
        keys.append(str(key.value) if isinstance(key, ast.Constant) else "?")
    return keys


def test_services_reached_through_one_typed_object() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(set(_extension_keys(ast.parse(path.read_text(), str(path)))))
        for path in _sources()
    }
    assert {path: keys for path, keys in offenders.items() if set(keys) - {SERVICES_KEY}} == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('import importlib\nimportlib.import_module("app")\n', {"importlib", "app"}),
        ('from importlib import import_module\nimport_module("proxy.server")\n', {"importlib", "proxy"}),
        ('__import__("dashboards")\n', {"dashboards"}),
        ("def f():\n    import app\n", {"app"}),
    ],
)
def test_imports_are_seen(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imported_packages(path) == expected


def test_lazy_imports_are_not_module_level(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "import flask\ntry:\n    import yaml\nexcept ImportError:\n    pass\ndef f():\n    import app\n"
    )
    assert imported_packages(path, module_level_only=True) == {"flask", "yaml"}


def test_extension_keys_are_seen() -> None:
    tree = ast.parse('a.extensions["warden.x"]\ncurrent_app.extensions.get("y")\na.extensions[k] = 1\n')
    assert _extension_keys(tree) == ["warden.x", "y", "?"]
