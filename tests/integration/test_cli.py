"""The `zeroserve` command line: one-line errors with exit code 2, --debug, predict client."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, RunningServer, run_zeroserve, start_server, wait_ready

pytestmark = pytest.mark.integration


zeroserve = run_zeroserve


def test_version() -> None:
    result = zeroserve("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "zeroserve, version 0.1.0"


def test_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    result = zeroserve("serve", str(tmp_path / "nope.py"))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: {tmp_path / 'nope.py'}: no such file or folder; "
        "give a .py file or a folder of them"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("class NotAModel:\n    pass\n", "no @predictor class found"),
        (
            "import os\n\nraise RuntimeError('missing dependency')\n",
            "importing model.py failed at line 3: RuntimeError: missing dependency",
        ),
        ("def broken(:\n", "importing model.py failed at line 1: SyntaxError"),
    ],
)
def test_unusable_model_file_exits_2(tmp_path: Path, source: str, message: str) -> None:
    model = tmp_path / "model.py"
    model.write_text(source)
    result = zeroserve("serve", str(model))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_class_exits_2() -> None:
    result = zeroserve("serve", f"{FIXTURES / 'predictors' / 'echo.py'}:Missing")
    assert result.returncode == 2
    assert "has no @predictor class named Missing" in result.stderr


def test_bad_declaration_exits_2_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from zeroserve import predictor\n\n"
        "@predictor(min_replicas=3, max_replicas=1)\n"
        "class Bad:\n"
        "    def predict(self, instances: list[int]) -> list[int]:\n"
        "        return instances\n"
    )
    result = zeroserve("serve", str(bad))
    assert result.returncode == 2
    assert "min_replicas=3 is greater than max_replicas=1" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = zeroserve("--debug", "serve", str(tmp_path / "nope.py"))
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = zeroserve("serve", str(FIXTURES / "predictors" / "echo.py"), "--port", str(port))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


def test_bad_size_flag_exits_2() -> None:
    result = zeroserve("serve", str(FIXTURES / "predictors" / "echo.py"), "--max-body-size", "lots")
    assert result.returncode == 2
    assert "'lots' is not a size" in result.stderr


def test_predict_prints_the_response(fixtures_server: RunningServer) -> None:
    result = zeroserve(
        "predict", "echo", "--url", fixtures_server.url, "--data", '{"instances": [1, 2]}'
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [1, 2]}


def test_predict_v2_reads_a_file(fixtures_server: RunningServer, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [4, 5]}]})
    )
    result = zeroserve(
        "predict", "async-double", "--v2", "--url", fixtures_server.url, "--data", f"@{body}"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["data"] == [8, 10]


def test_predict_error_response_exits_1(fixtures_server: RunningServer) -> None:
    result = zeroserve(
        "predict", "async-double", "--url", fixtures_server.url, "--data", '{"instances": ["x"]}'
    )
    assert result.returncode == 1
    assert json.loads(result.stdout)["type"] == "InvalidPayload"


def test_predict_without_server_exits_2() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = zeroserve("predict", "echo", "--url", f"http://127.0.0.1:{port}", "--data", "{}")
    assert result.returncode == 2
    assert "is `zeroserve serve` running there?" in result.stderr


def test_predict_bad_json_exits_2() -> None:
    result = zeroserve("predict", "echo", "--data", "{not json")
    assert result.returncode == 2
    assert "--data is not valid JSON" in result.stderr


def test_ctrl_c_exits_0_without_traceback(tmp_path: Path) -> None:
    server = start_server(FIXTURES / "predictors" / "echo.py", tmp_path / "echo.log")
    wait_ready(server, "echo")
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=30) == 0
    assert "Traceback" not in server.log()


def test_cache_commands(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 5000)
    repository = str(tmp_path / "repo")
    pushed = zeroserve("push", str(model), repository, "--name", "m", "--version", "v1")
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed: sha256:" in pushed.stdout
    listed = zeroserve("models", "ls", f"{repository}/m")
    assert "v1" in listed.stdout
    cache = ("cache", "--cache", str(tmp_path / "cache"))
    warmed = zeroserve(*cache, "warm", f"{repository}/m@v1")
    assert warmed.returncode == 0, warmed.stderr
    assert "fetched at" in warmed.stdout
    assert " m " in zeroserve(*cache, "ls").stdout
    (entry,) = (tmp_path / "cache" / "entries").iterdir()
    (entry / "weights.bin").write_bytes(b"x" * 5000)
    verified = zeroserve(*cache, "verify")
    assert verified.returncode == 1
    assert "weights.bin is missing or corrupt; removed" in verified.stdout
    assert "0 entries intact, 1 removed" in verified.stdout
    assert "0 of" in zeroserve(*cache, "gc").stdout
    missing = zeroserve(*cache, "warm", f"{repository}/m@v2")
    assert missing.returncode == 3
    assert "no version v2" in missing.stderr


@pytest.mark.timeout(60)
def test_cache_warm_of_a_repository_file_shorter_than_its_manifest_exits_5(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 5000)
    repository = tmp_path / "repo"
    assert (
        zeroserve("push", str(model), str(repository), "--name", "m", "--version", "v1").returncode
        == 0
    )
    (stored,) = (p for p in repository.rglob("weights.bin"))
    stored.write_bytes(b"w" * 3000)  # truncated after the push
    for uri in (str(repository), f"file://{repository}"):
        cache = ("cache", "--cache", str(tmp_path / f"cache-{len(uri)}"))
        warmed = zeroserve(*cache, "warm", f"{uri}/m@v1", timeout=30)
        assert warmed.returncode == 5, warmed.stderr
        assert "ends after 3000 bytes" in warmed.stderr
        assert "Traceback" not in warmed.stderr
        assert not list((tmp_path / f"cache-{len(uri)}" / "entries").iterdir())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("status", "--kubeconfig", "{bad_yaml}"), 2, "is not a usable kubeconfig"),
        (("status", "--kubeconfig", "{tmp}/nonexistent"), 2, "/nonexistent: no such file"),
        (("cache", "--budget", "lots", "ls"), 2, "--budget: 'lots' is not a size"),
        (("cache", "--cache", "{a_file}", "ls"), 2, "is a file; pass a folder"),
        (("models", "ls", "{tmp}/no/such/repo/iris"), 3, "no versions pushed there"),
    ],
)
def test_a_new_users_mistakes_are_one_line_with_the_tables_exit_code(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("a: [b\n")
    (tmp_path / "a_file").write_text("not a folder")
    paths = {"bad_yaml": tmp_path / "bad.yaml", "a_file": tmp_path / "a_file", "tmp": tmp_path}
    result = zeroserve(*(arg.format(**paths) for arg in args))
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", [(), ("--direct",)], ids=["activator", "direct"])
def test_serve_exits_with_preloads_code_when_weights_cannot_be_fetched(
    tmp_path: Path, mode: tuple[str, ...]
) -> None:
    model = tmp_path / "model.py"
    model.write_text(
        "from pathlib import Path\n"
        "from zeroserve import predictor\n\n"
        '@predictor(name="gone", model_uri="s3://no-bucket/gone@v1")\n'
        "class Gone:\n"
        "    def load(self, model_dir: Path) -> None: ...\n"
        "    def predict(self, instances: list[int]) -> list[int]:\n"
        "        return instances\n"
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache"),
    }
    result = zeroserve("serve", str(model), "--port", "0", *mode, env=env)
    assert result.returncode == 4, result.stderr  # access refused, as preload exits
    assert "cannot reach the object store" in result.stderr
    assert "Traceback" not in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


RAY_REFUSED = """
from zeroserve import predictor, secret

@predictor(name="keyed", env={"KEY": secret("s3", "key")})
class Keyed:
    def predict(self, instances: list[float]) -> list[float]:
        return instances
"""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--engine", "ray"), "cannot run on Ray: env KEY come from Kubernetes Secrets"),
        (("--engine", "ray", "--direct"), "--direct and --fork are for the local engine"),
        (("--address", "auto"), "--address and --ray-resource go with --engine ray"),
        (("--engine", "ray", "--ray-resource", "nope=gpu"), "names no served model: nope"),
    ],
)
def test_what_the_ray_engine_cannot_run_exits_2_before_it_starts(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    (tmp_path / "keyed.py").write_text(RAY_REFUSED)
    done = run_zeroserve("serve", str(tmp_path / "keyed.py"), *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_ray_engine_without_ray_says_how_to_install_it() -> None:
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("Ray is installed here; tests/ray runs the engine (tox -e ray)")
    done = run_zeroserve("serve", str(FIXTURES / "predictors" / "echo.py"), "--engine", "ray")
    assert done.returncode == 2
    assert "pip install 'zeroserve[ray]'" in done.stderr
    assert "Traceback" not in done.stderr
