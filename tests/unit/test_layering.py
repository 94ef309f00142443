"""Imports point down the layers: coldstart -> predictors -> framework, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP_OR_KUBERNETES = {
    "kserve",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "requests",
    "aiohttp",
    "urllib3",
    "http",
    "grpc",
    "kubernetes",
    "kubernetes_asyncio",
    "kr8s",
    "flask",
}


def imported_modules(folder: Path, root: Path = ROOT) -> dict[str, set[str]]:
    """Map each Python file under folder to the absolute module names it imports."""
    found: dict[str, set[str]] = {}
    for file in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(file.relative_to(root))] = names
    return found


def coldstart_violations(root: Path) -> list[str]:
    """Imports in root/coldstart of the framework, an HTTP library or a Kubernetes client."""
    bad = []
    for file, names in imported_modules(root / "coldstart", root).items():
        for name in sorted(names):
            top = name.split(".")[0]
            upward = top == "zeroserve" and not name.startswith("zeroserve.coldstart")
            if top in HTTP_OR_KUBERNETES or upward:
                bad.append(f"{file} imports {name}")
    return bad


def test_coldstart_imports_no_framework_http_or_kubernetes() -> None:
    assert coldstart_violations(ROOT) == []


def test_predictors_use_only_the_public_api_and_coldstart() -> None:
    public = {"zeroserve"}
    for file, names in imported_modules(ROOT / "predictors").items():
        for name in names:
            if name.split(".")[0] != "zeroserve":
                continue
            allowed = name in public or name.startswith(
                ("zeroserve.coldstart", "zeroserve.predictors")
            )
            assert allowed, f"{file} imports framework internals: {name}"


@pytest.mark.parametrize("bad", ["from zeroserve.serving.server import X", "import kserve"])
def test_the_checker_catches_violations(tmp_path: Path, bad: str) -> None:
    (tmp_path / "coldstart").mkdir()
    (tmp_path / "coldstart" / "bad.py").write_text(bad + "\n")
    assert len(coldstart_violations(tmp_path)) == 1


def test_framework_imports_kserve_only_through_the_argv_guard() -> None:
    for file, names in imported_modules(ROOT / "framework").items():
        if any(name.split(".")[0] == "kserve" for name in names):
            source = (ROOT / file).read_text()
            assert "with kserve_argv():" in source, f"{file} imports kserve unguarded"
