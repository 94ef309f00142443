"""The README's blocks run as written: the Quickstart serves iris, the examples answer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration

sys.path.insert(0, str(ROOT / ".ci"))
from readme_block import block_after  # noqa: E402

README = (ROOT / "README.md").read_text()
INSTALL_AND_START_TIMEOUT_S = 400


def marked_blocks(marker: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block right after a `<!-- marker -->` line."""
    pattern = rf"<!-- {re.escape(marker)} -->\n```(\w+)\n(.*?)\n```"
    return re.findall(pattern, README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command() -> None:
    command = block_after("quickstart:test", README)
    assert "tox" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_block.py quickstart:test" in ci
    assert (ROOT / "tox.ini").is_file()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Run the Quickstart's serve command in a fresh virtual environment on a free port.

    The environment sees the test environment's packages (--system-site-packages) so that the
    README's `pip install` resolves without downloading the world again; the command itself runs
    verbatim. The port comes from ZEROSERVE_SERVER__PORT, the setting the README documents.
    """
    venv = tmp_path_factory.mktemp("readme") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    port = free_port()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env["ZEROSERVE_SERVER__PORT"] = str(port)
    log_path = venv.parent / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block_after("quickstart:serve", README)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_iris(process, url, log_path)
        yield url, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wait_for_iris(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + INSTALL_AND_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"quickstart exited:\n{log_path.read_text()[-4000:]}"
        try:
            if httpx.get(f"{url}/v2/models/iris/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"iris not ready:\n{log_path.read_text()[-4000:]}")


@pytest.mark.timeout(INSTALL_AND_START_TIMEOUT_S + 120)
def test_readme_examples_run_against_the_quickstart_server(
    quickstart: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = quickstart
    blocks = marked_blocks("readme:run")
    outputs = []
    for language, code in blocks:
        code = code.replace("http://127.0.0.1:8080", url)
        if language == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = tmp_path / f"block{len(outputs)}.py"
            script.write_text(code)
            command = [str(Path(env["VIRTUAL_ENV"]) / "bin" / "python"), str(script)]
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"README block failed:\n{code}\n{result.stderr}"
        outputs.append(result.stdout)
    assert len(blocks) == 7
    assert '{"predictions":[0,2]}' in outputs[0]
    assert '"type":"InvalidPayload"' in outputs[1]
    assert '"field":"instances[0][1]"' in outputs[1]
    assert '"outputs"' in outputs[2]
    assert '"predictions":[2]' in outputs[2].replace(" ", "")
    iris_row = next(line for line in outputs[3].splitlines() if "│ iris " in line)
    assert "ready" in iris_row
    assert "to ready" in iris_row  # the cold start the first request caused
    assert '"max_latency_ms":2.0' in outputs[5]
    assert "kind: InferenceService" in outputs[6]
    assert "namespace: team-a" in outputs[6]
