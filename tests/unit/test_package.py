"""What a code artifact ships: the model's folder without credentials, ignored files or the
targets of symlinks that leave it; ``zeroserve build`` and ``package`` stage it the same way."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.conftest import run_zeroserve
from zeroserve.errors import UsageError
from zeroserve.serving.loader import find_predictors
from zeroserve.targets.kserve.package import stage

MODEL = """from zeroserve import predictor


@predictor(name="shipped")
class Shipped:
    def predict(self, instances: list[int]) -> list[int]:
        return instances
"""


def model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "scratch").mkdir()
    (folder / "model.py").write_text(MODEL)
    (folder / ".env").write_text("AWS_SECRET_ACCESS_KEY=do-not-ship\n")
    (folder / "data" / ".env.production").write_text("TOKEN=do-not-ship\n")
    (folder / "data" / "vocab.txt").write_text("a b c\n")
    (folder / "data" / "huge.bin").write_bytes(b"0" * 100)
    (folder / "scratch" / "notes.txt").write_text("mine\n")
    (folder / "data" / "vocab-link.txt").symlink_to("vocab.txt")  # inside: fine
    (folder / ".zeroserveignore").write_text("# not for the cluster\n*.bin\nscratch/\n")
    return folder


def shipped(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_credentials_and_ignored_files_are_left_out(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    staged = stage(find_predictors(str(folder)), tmp_path / "staged")
    assert shipped(staged) == {
        "model.py",
        "data/vocab.txt",
        "data/vocab-link.txt",
        "zeroserve-spec.json",
    }


def test_sockets_and_pipes_in_the_folder_are_left_out(tmp_path: Path) -> None:
    """A server's socket or a FIFO beside the model (a Ray session folder, say) has no content to
    ship; copying it failed with a traceback."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL)
    os.mkfifo(folder / "pipe")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "raylet.sock"))
        staged = stage(find_predictors(str(folder)), tmp_path / "staged")
    assert sorted(p.name for p in staged.iterdir()) == ["model.py", "zeroserve-spec.json"]


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    (folder / "data" / "key").symlink_to(secret)
    with pytest.raises(UsageError, match="outside"):
        stage(find_predictors(str(folder)), tmp_path / "staged")


@pytest.mark.timeout(60)
def test_zeroserve_build_ships_the_same_and_refuses_the_same(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    built = run_zeroserve("build", str(folder / "model.py"), "--output", str(tmp_path / "out"))
    assert built.returncode == 0, built.stderr
    assert shipped(tmp_path / "out") == {
        "Dockerfile",
        "model.py",
        "data/vocab.txt",
        "data/vocab-link.txt",
        "zeroserve-spec.json",
    }
    os.symlink("/etc/passwd", folder / "passwd")
    refused = run_zeroserve("build", str(folder / "model.py"), "--output", str(tmp_path / "again"))
    assert refused.returncode == 2
    assert "outside" in refused.stderr
    assert "Traceback" not in refused.stderr
    existing_file = tmp_path / "a-file"
    existing_file.write_text("x")
    (folder / "passwd").unlink()
    onto_file = run_zeroserve("build", str(folder / "model.py"), "--output", str(existing_file))
    assert onto_file.returncode == 2
    assert "is a file" in onto_file.stderr
