"""Dependencies point one way: engine has no Ray or web code; client imports neither engine nor heavy libs; the
shared schema imports nothing of ours."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "engine": {"ray", "fastapi", "starlette", "uvicorn", "serve_app", "client", "websockets"},
    "client": {"ray", "numba", "numpy", "pandas", "pyarrow", "engine", "serve_app"},
    # shared definitions: pydantic and the standard library only, so the thin client stays thin
    "schema": {"ray", "numba", "numpy", "pandas", "pyarrow", "engine", "serve_app", "client", "httpx",
               "websockets", "fastapi", "starlette", "rich"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_its_boundary(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {str(f.relative_to(REPO)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}
