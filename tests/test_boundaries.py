"""Dependencies point one way: engine has no Ray or web code; client and feeds import neither engine nor heavy libs;
the shared schema imports nothing of ours."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = {"httpx", "requests", "urllib.request", "http.client", "websockets", "fastapi", "starlette", "aiohttp",
       "uvicorn"}
FORBIDDEN = {
    # pure compute: downloaders live in feeds/, the service in serve_app/
    "engine": {"ray", "serve_app", "client", "feeds", *WEB},
    "client": {"ray", "numba", "numpy", "pandas", "pyarrow", "engine", "serve_app"},
    # exchange downloaders: part of the base install, as thin as the client
    "feeds": {"ray", "numba", "numpy", "pandas", "pyarrow", "engine", "serve_app", "client"},
    # shared definitions: pydantic and the standard library only, so the thin client stays thin
    "schema": {"ray", "numba", "numpy", "pandas", "pyarrow", "engine", "serve_app", "client", "httpx",
               "websockets", "fastapi", "starlette", "rich"},
}


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, dotted: ``from urllib import request`` imports ``urllib.request``."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def forbidden_imports(source: str, forbidden: set[str]) -> list[str]:
    """The imports of ``source`` that are a forbidden module or inside one."""
    return sorted(m for m in imported_modules(source) if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_stay_inside_its_boundary(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {str(f.relative_to(REPO)): forbidden_imports(f.read_text(), FORBIDDEN[package]) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_engine_rule_catches_every_spelling_of_a_web_import():
    source = "\n".join([
        "import httpx",
        "import requests.adapters",
        "import urllib.request as fetch",
        "from urllib import request",
        "from http.client import HTTPSConnection",
        "from http import client",
        "from websockets.sync.client import connect",
        "from aiohttp import ClientSession",
        "from starlette.responses import Response",
        "import fastapi",
        "from urllib.parse import quote",  # string handling, not the web: allowed
        "import http",  # HTTPStatus and friends: allowed
        "from engine import layout",
        "'import httpx'  # text, not an import",
    ])
    assert forbidden_imports(source, FORBIDDEN["engine"]) == [
        "aiohttp", "aiohttp.ClientSession", "fastapi", "http.client", "http.client.HTTPSConnection", "httpx",
        "requests.adapters", "starlette.responses", "starlette.responses.Response", "urllib.request",
        "websockets.sync.client", "websockets.sync.client.connect"]
