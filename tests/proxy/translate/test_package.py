"""The translation package stays pure: the standard library, `proxy.jsonbody` and itself, nothing else
(no Flask, no network clients), so the gateway and any tool can use it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "proxy" / "translate"
ALLOWED = {"proxy.jsonbody", "proxy.translate"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_imports_only_the_standard_library_and_jsonbody() -> None:
    offenders = {
        path.name: sorted(
            name
            for name in _imports(path)
            if name.split(".")[0] not in sys.stdlib_module_names
            and not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED)
        )
        for path in sorted(PACKAGE.glob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}
    assert len(offenders) > 10
