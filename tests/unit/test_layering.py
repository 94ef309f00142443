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


def _violations(folder: str, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """Imports under ``folder`` of any module named in (or below) ``forbidden``."""
    bad = []
    for file, names in imported_modules(root / folder, root).items():
        for name in sorted(names):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{file} imports {name}")
    return bad


def test_the_spec_is_pure_data() -> None:
    forbidden = ("zeroserve.serving", "zeroserve.targets", "zeroserve.local", "zeroserve.cli")
    assert _violations("framework/spec", forbidden) == []
    assert _violations("framework/spec", tuple(HTTP_OR_KUBERNETES)) == []


def test_targets_never_import_the_local_runtime() -> None:
    assert _violations("framework/targets", ("zeroserve.local",)) == []


def test_serving_knows_nothing_of_the_local_runtime_targets_or_cli() -> None:
    forbidden = ("zeroserve.local", "zeroserve.targets", "zeroserve.cli")
    assert _violations("framework/serving", forbidden) == []


def test_the_runner_imports_no_serving_engine() -> None:
    engines = ("kserve", "fastapi", "starlette", "uvicorn", "ray", "zeroserve.serving.kserve_model")
    found = imported_modules(ROOT / "framework" / "serving")["framework/serving/runner.py"]
    assert not [
        name for name in found if any(name.split(".")[0] == e or name == e for e in engines)
    ]


def test_vllm_is_imported_only_in_the_llm_package_and_its_predictor_lazily() -> None:
    allowed = ("framework/llm/", "predictors/vllm.py", "predictors/vllm_start.py")
    allowed += ("predictors/vllm_preimport.py",)  # by name only, with importlib
    for folder in ("framework", "predictors", "coldstart"):
        for file, names in imported_modules(ROOT / folder).items():
            if any(name.split(".")[0] == "vllm" for name in names):
                assert file.startswith(allowed), f"{file} imports vLLM"
    llm = map(str, (ROOT / "framework" / "llm").glob("*.py"))
    for file in ("predictors/vllm.py", "predictors/vllm_start.py", *llm):
        tree = ast.parse(Path(ROOT / file).read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(str(n).split(".")[0] == "vllm" for n in names), f"{file}: eager vLLM"


def test_ray_is_imported_only_in_its_target() -> None:
    for file, names in imported_modules(ROOT / "framework").items():
        if any(name.split(".")[0] == "ray" for name in names):
            assert file.startswith("framework/targets/ray/"), f"{file} imports Ray"


def test_coldstart_imports_nothing_of_zeroserve_but_itself() -> None:
    for file, names in imported_modules(ROOT / "coldstart").items():
        for name in names:
            if name.split(".")[0] == "zeroserve":
                assert name.startswith("zeroserve.coldstart"), f"{file} imports {name}"


def test_the_layer_checker_catches_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "framework" / "spec").mkdir(parents=True)
    (tmp_path / "framework" / "spec" / "bad.py").write_text("import zeroserve.local.pool\n")
    assert _violations("framework/spec", ("zeroserve.local",), tmp_path) == [
        "framework/spec/bad.py imports zeroserve.local.pool"
    ]


def test_only_the_ray_target_imports_ray() -> None:
    for root in ("framework", "coldstart", "predictors"):
        for file, names in imported_modules(ROOT / root).items():
            if file.startswith("framework/targets/ray/"):
                continue
            assert not any(name.split(".")[0] == "ray" for name in names), f"{file} imports Ray"


def test_the_ray_target_imports_ray_only_inside_functions() -> None:
    """`import zeroserve.targets.ray.*` works without Ray (the CLI checks for it first)."""
    for file in sorted((ROOT / "framework" / "targets" / "ray").glob("*.py")):
        tree = ast.parse(file.read_text())
        top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        modules = [
            alias.name if isinstance(node, ast.Import) else (node.module or "")
            for node in top
            for alias in node.names
        ]
        assert not any(name.split(".")[0] == "ray" for name in modules), file.name


def test_delivery_judges_models_over_http_only() -> None:
    forbidden = ("zeroserve.serving", "zeroserve.local", "zeroserve.targets", "zeroserve.cli")
    assert _violations("framework/delivery", forbidden) == []
