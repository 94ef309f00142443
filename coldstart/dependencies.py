"""A model's own dependencies on the shared runtime: one environment per lock, on the cache volume.

A code artifact carries ``requirements.lock`` (``name==version`` lines). A pod makes, next to the
cached weights, an environment for that lock and that interpreter, content-addressed: the first
pod builds it under a file lock while the others wait, every later pod (on any node sharing the
volume) imports from it and installs nothing. The environment sees the runtime's own packages
(a ``.pth`` file names their folders), so pip installs only what the lock adds. It is built in a
scratch folder and renamed into place with a listing of its files; a folder without a listing
that matches is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import venv
from collections.abc import Callable
from pathlib import Path

from zeroserve.coldstart.cache import exclusive
from zeroserve.coldstart.errors import DependencyError

LOCK_FILE = "requirements.lock"  # in a code artifact, written by `zeroserve package`
ENVIRONMENTS = "environments"
LISTING = "zeroserve-environment.json"
PIP_TIMEOUT_S = 900


def requirements_in(lock: Path) -> list[str]:
    """The lock's requirement lines, without comments and blanks."""
    lines = (line.split("#", 1)[0].strip() for line in lock.read_text().splitlines())
    return [line for line in lines if line]


def environment_for(
    lock: Path, cache_root: Path, notice: Callable[[str], None] | None = None
) -> Path | None:
    """The site-packages folder of ``lock``'s environment (built if missing); None for a lock
    with nothing in it. DependencyError naming the requirement pip could not install."""
    requirements = requirements_in(lock)
    if not requirements:
        return None
    root = cache_root / ENVIRONMENTS
    key = _key(requirements)
    final = root / key
    if _intact(final):
        return _site_packages(final)
    root.mkdir(parents=True, exist_ok=True)
    waiting = f"another process is building the environment {key}; waiting for it"
    with exclusive(root / f"{key}.lock", waiting, notice):
        if not _intact(final):  # built meanwhile by the lock's last holder
            shutil.rmtree(final, ignore_errors=True)
            _build(requirements, root, final)
            if notice:
                notice(f"built the environment {key} for {', '.join(requirements)}")
    return _site_packages(final)


def _key(requirements: list[str]) -> str:
    """What makes two environments the same: the lock, and the interpreter that imports it."""
    identity = [sorted(requirements), sys.version, sys.executable, platform.machine()]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def _build(requirements: list[str], root: Path, final: Path) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        venv.create(scratch, system_site_packages=False, with_pip=False, symlinks=True)
        runtime = [path for path in (*site.getsitepackages(), *sys.path) if path.endswith(
            "site-packages") and Path(path).is_dir()]  # fmt: skip
        (_site_packages(scratch) / "zeroserve-runtime.pth").write_text(
            "\n".join(dict.fromkeys(runtime)) + "\n"
        )
        _pip_install(scratch, requirements)
        (scratch / LISTING).write_text(json.dumps(_listing(scratch), sort_keys=True))
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _pip_install(environment: Path, requirements: list[str]) -> None:
    python = environment / "bin" / "python"
    command = [sys.executable, "-m", "pip", "--python", str(python), "install",
               "--disable-pip-version-check", "--no-input", *requirements]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise DependencyError(
            f"installing {' '.join(requirements)} took over {PIP_TIMEOUT_S}s; check the "
            "package index the pod reaches (PIP_INDEX_URL)"
        ) from None
    if done.returncode != 0:
        raise DependencyError(
            f"the model's locked requirements could not be installed: {_pip_reason(done.stderr)}"
            "; fix requirements.txt (or the package index the pod reaches: PIP_INDEX_URL) and "
            "package the model again"
        )


def _pip_reason(stderr: str) -> str:
    """pip's own line for what failed (e.g. "No matching distribution found for x==1")."""
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines()
              if line.startswith("ERROR:")]  # fmt: skip
    return errors[-1] if errors else (stderr.strip().splitlines() or ["pip failed"])[-1]


def _site_packages(environment: Path) -> Path:
    relative = Path(sysconfig.get_path("purelib", vars={"base": "."}))
    return environment / relative


def _listing(environment: Path) -> dict[str, int]:
    """Every file of the environment and its size (its links by what they point to)."""
    listing = {}
    for path in sorted(environment.rglob("*")):
        if path.is_symlink():
            listing[str(path.relative_to(environment))] = -1
        elif path.is_file() and path.name != LISTING:
            listing[str(path.relative_to(environment))] = path.stat().st_size
    return listing


def _intact(environment: Path) -> bool:
    """A finished environment whose files are all there, at the sizes they were built with."""
    try:
        recorded = json.loads((environment / LISTING).read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded) and _listing(environment) == recorded


def activate(site_packages: Path) -> None:
    """Import from the environment in this process and in the processes it starts."""
    folder = str(site_packages)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    existing = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = folder + (os.pathsep + existing if existing else "")
