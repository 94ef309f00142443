"""``zeroserve validate`` on real workers (each candidate and baseline started as ``serve --direct``
starts it) and ``deploy --require-validation`` honouring its reports."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_iris

from tests.conftest import RunningServer, run_zeroserve

pytestmark = pytest.mark.timeout(600)
WORSE = """
    def predict(self, instances: list[Flower]) -> list[int]:
        labels = [int(label) for label in self.classifier.predict(instances)]
        # about one flower in twenty gets the next class: some 5 points of accuracy lost (7 of 150)
        return [
            (label + 1) % 3 if round(10 * sum(row)) % 10 == 0 else label
            for label, row in zip(labels, instances, strict=True)
        ]
"""
ORIGINAL = """
    def predict(self, instances: list[Flower]) -> list[int]:
        return [int(label) for label in self.classifier.predict(instances)]
"""


def variant(iris_dir: Path, folder: Path, old: str = "", new: str = "") -> Path:
    """A copy of the iris sample (code and weights) with ``old`` replaced by ``new``."""
    folder.mkdir()
    shutil.copy(iris_dir / "model.joblib", folder / "model.joblib")
    code = (iris_dir / "model.py").read_text()
    assert old in code, "the iris sample changed: update this test"
    (folder / "model.py").write_text(code.replace(old, new))
    return folder / "model.py"


@pytest.fixture(scope="module", autouse=True)
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The local history of this module's validations (not the user's ~/.zeroserve)."""
    path = tmp_path_factory.mktemp("history") / "history.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZEROSERVE_HISTORY", str(path))
        yield path


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    features, labels = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("data") / "iris.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "label"])
        writer.writerows([*row, int(label)] for row, label in zip(features, labels, strict=True))
    return path


@pytest.fixture(scope="module")
def models(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "baseline": variant(iris_dir, root / "baseline"),
        "good": variant(iris_dir, root / "good"),
        "worse": variant(iris_dir, root / "worse", ORIGINAL, WORSE),
        "broken": variant(
            iris_dir,
            root / "broken",
            "        self.classifier = joblib.load(model_file)",
            '        raise RuntimeError("weights for another scikit-learn")',
        ),
        "breaking": variant(
            iris_dir,
            root / "breaking",
            "Field(min_length=4, max_length=4)",
            "Field(min_length=5, max_length=5)",
        ),
    }


def validate(
    models: dict[str, Path], held_out: Path, name: str, report: Path, *extra: str
) -> tuple[int, dict[str, object], str]:
    result = run_zeroserve(
        "validate", str(models[name]), "--model", "iris", "--data", str(held_out),
        "--baseline", str(models["baseline"]), "--report", str(report), *extra,
        timeout=400,
    )  # fmt: skip
    found = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, found, result.stdout + result.stderr


def validated(
    models: dict[str, Path], held_out: Path, name: str, folder: Path, code: int, *extra: str
) -> tuple[dict[str, Any], str, Path]:
    """Validate ``name`` against the baseline; its report, output and path; exit code ``code``."""
    report = folder / f"{name}.json"
    exit_code, found, output = validate(models, held_out, name, report, *extra)
    assert exit_code == code, output
    return found, output, report


def deploy_with(target: Path, report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_zeroserve("deploy", str(target), "--require-validation", str(report), *extra)


def checks(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {check["name"]: check for check in report["checks"]}  # type: ignore[attr-defined,index]


def test_a_good_candidate_passes_and_deploy_takes_its_report(
    models: dict[str, Path], held_out: Path, tmp_path: Path
) -> None:
    found, output, report = validated(models, held_out, "good", tmp_path, 0)
    assert found["verdict"] == "pass"
    assert set(checks(found)) == {"starts", "schema", "quality", "latency", "shift"}
    assert found["metrics"]["candidate"] == found["metrics"]["baseline"]  # type: ignore[index]
    assert found["shift"]["psi"] == 0  # type: ignore[index]
    assert "validation of iris: pass" in output
    # deploy goes past the report to the cluster (none here: its own error, not the report's)
    deployed = deploy_with(models["good"], report, "--kubeconfig", str(tmp_path / "none"))
    assert "--require-validation" not in deployed.stderr, deployed.stderr
    assert deployed.returncode != 0


def test_a_candidate_5_points_worse_is_refused_and_deploy_refuses_it(
    models: dict[str, Path], held_out: Path, tmp_path: Path
) -> None:
    found, output, report = validated(models, held_out, "worse", tmp_path, 8)
    assert found["verdict"] == "fail"
    quality = checks(found)["quality"]
    assert quality["passed"] is False
    assert "accuracy" in str(quality["detail"])
    assert "baseline" in str(quality["detail"])
    accuracy = {side: found["metrics"][side]["accuracy"] for side in ("baseline", "candidate")}  # type: ignore[index]
    drop = accuracy["baseline"] - accuracy["candidate"]
    assert 0.03 <= drop <= 0.08
    assert "failed validation (quality" in output
    deployed = deploy_with(models["worse"], report)
    assert deployed.returncode == 2
    assert "the candidate failed quality" in deployed.stderr


def test_a_schema_breaking_candidate_is_refused_naming_the_field(
    models: dict[str, Path], held_out: Path, tmp_path: Path
) -> None:
    found, _, _ = validated(models, held_out, "breaking", tmp_path, 8)
    schema = checks(found)["schema"]
    assert schema["passed"] is False
    assert "instances[*]: minItems raised from 4 to 5" in str(schema["detail"])
    assert checks(found)["starts"]["passed"] is False  # it refuses the held-out rows too


def test_a_candidate_that_cannot_start_fails_the_first_check(
    models: dict[str, Path], held_out: Path, tmp_path: Path
) -> None:
    found, _, _ = validated(models, held_out, "broken", tmp_path, 8)
    assert [check["name"] for check in found["checks"]] == ["starts"]  # type: ignore[attr-defined]
    assert "weights for another scikit-learn" in str(checks(found)["starts"]["detail"])


def test_deploy_refuses_a_missing_a_changed_or_another_models_report(
    models: dict[str, Path], held_out: Path, tmp_path: Path
) -> None:
    missing = deploy_with(models["good"], tmp_path / "none.json")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert "zeroserve validate" in missing.stderr
    found, _, report = validated(
        models, held_out, "baseline", tmp_path, 0, "--max-latency-ratio", "9"
    )
    other = deploy_with(models["worse"], report)
    assert other.returncode == 2
    assert "validated other code or weights" in other.stderr
    edited = dict(found, verdict="pass", model="other")
    report.write_text(json.dumps(edited))
    tampered = run_zeroserve("deploy", str(models["baseline"]), "--require-validation", str(report))
    assert tampered.returncode == 2
    assert "changed after it was written" in tampered.stderr


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--data", "missing.csv"], "does not exist"),
        (["--label", "species"], "has no 'species' column"),
        (["--baseline", "no/such/model.py"], "no/such/model.py"),
        (["--threshold", "accuracy=0.9"], "write METRIC:FIELD=VALUE"),
    ],
    ids=["no data", "no label column", "no baseline", "bad threshold"],
)
def test_bad_input_is_one_line_and_exit_code_2(
    models: dict[str, Path], held_out: Path, tmp_path: Path, change: list[str], needle: str
) -> None:
    args = {"--data": str(held_out), "--baseline": str(models["baseline"])}
    extra = []
    for flag, value in zip(change[::2], change[1::2], strict=True):
        if flag in args:
            args[flag] = str(tmp_path / value) if flag == "--data" else value
        else:
            extra += [flag, value]
    result = run_zeroserve(
        "validate", str(models["good"]), "--model", "iris", "--report",
        str(tmp_path / "r.json"), *[item for pair in args.items() for item in pair], *extra,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_the_schema_route_answers_through_the_activator(iris_server: RunningServer) -> None:
    answer = httpx.get(f"{iris_server.url}/zeroserve/models/iris/schema", timeout=60)
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    assert schema["model"] == "iris"
    assert schema["instances"]["items"]["minItems"] == 4
    assert schema["returns"] == {"items": {"type": "integer"}, "type": "array"}
    head = httpx.head(f"{iris_server.url}/zeroserve/models/iris/schema", timeout=60)
    assert head.status_code == 200
    assert head.content == b""
    missing = httpx.get(f"{iris_server.url}/zeroserve/models/nobody/schema", timeout=60)
    assert missing.status_code == 404


def test_each_verdict_is_in_the_local_history(history: Path) -> None:
    """After the validations above: one line each, in order, as `history --local` shows them."""
    shown = run_zeroserve("history", "iris", "--local", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)
    assert len(records) == len(history.read_text().splitlines()) >= 4
    assert {r["action"] for r in records} == {"validate"}
    verdicts = {Path(r["candidate"]).parent.name: r["verdict"] for r in records}
    assert verdicts["good"] == "pass"
    assert verdicts["worse"] == "fail"
    assert all(r["report"].startswith("sha256:") and r["who"] for r in records)
    table = run_zeroserve("history", "iris", "--local").stdout
    assert "verdict fail" in table


def test_a_live_baseline_is_asked_at_its_url(
    models: dict[str, Path], held_out: Path, iris_server: RunningServer, tmp_path: Path
) -> None:
    """The baseline already serving (here behind the activator): asked, never started."""
    report = tmp_path / "live.json"
    result = run_zeroserve(
        "validate", str(models["good"]), "--model", "iris", "--data", str(held_out),
        "--baseline", iris_server.url, "--report", str(report), "--max-latency-ratio", "9",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(report.read_text())
    assert found["baseline"]["target"] == iris_server.url
    assert found["metrics"]["candidate"] == found["metrics"]["baseline"]
    assert checks(found)["schema"]["passed"] is True
