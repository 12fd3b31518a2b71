"""The shipped search spaces are package data: a wheel carries them, and `ipt-ray search demo`
finds them through importlib.resources whatever the current directory and however ipt-ray was
installed (a wheel in site-packages, a Docker image, a cluster node, an editable checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ipt_ray
from ipt_ray.tuning.space import load_space, shipped_spaces, shipped_spaces_dir

REPO = Path(__file__).resolve().parents[1]
SOURCE_SPACES = REPO / "ipt_ray" / "tuning" / "spaces"
SHIPPED_NAMES = sorted(p.stem for p in SOURCE_SPACES.glob("*.yaml"))

# Loads every shipped space by name, as `ipt-ray search NAME` does (cli.search -> load_space).
_LOAD_ALL = """
import json
import ipt_ray
from ipt_ray.tuning.space import load_space, shipped_spaces, shipped_spaces_dir
print(json.dumps({
    "package": ipt_ray.__file__,
    "folder": str(shipped_spaces_dir()),
    "loaded": {n: str(load_space(n).path) for n in shipped_spaces()},
}))
"""


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_the_shipped_spaces_folder_is_inside_the_package() -> None:
    assert SHIPPED_NAMES, f"no shipped spaces in {SOURCE_SPACES}"
    folder = shipped_spaces_dir()
    assert folder == Path(ipt_ray.__file__).resolve().parent / "tuning" / "spaces"
    assert shipped_spaces() == SHIPPED_NAMES
    assert not (REPO / "search_spaces").exists(), "shipped spaces live in ipt_ray/tuning/spaces"


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_every_shipped_space_loads_by_name_from_another_directory(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    space = load_space(name)
    assert space.path == shipped_spaces_dir() / f"{name}.yaml"
    assert space.name == name


def test_shipped_spaces_load_by_name_in_a_fresh_process_outside_the_repo(tmp_path: Path) -> None:
    # A new interpreter whose sys.path[0] is tmp_path: nothing is found through the cwd.
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["loaded"]) == SHIPPED_NAMES


def pip(command: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``pip COMMAND --no-deps --no-index --quiet ARGS`` in this venv: offline, nothing else."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            command,
            "--no-deps",
            "--no-index",
            "--quiet",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline (the venv's setuptools, no index) from a copy of the sources, so
    that the build writes no build/ or *.egg-info into the shared checkout."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "ipt_ray", src / "ipt_ray", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    dist = root / "dist"
    proc = pip("wheel", "--no-build-isolation", "-w", dist, src)
    assert proc.returncode == 0, proc.stderr
    (built,) = dist.glob("ipt_ray-*.whl")
    return built


def test_the_wheel_holds_every_shipped_space(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "ipt_ray/tuning/__init__.py" in names
    missing = [n for n in SHIPPED_NAMES if f"ipt_ray/tuning/spaces/{n}.yaml" not in names]
    assert not missing, f"{wheel.name} lacks the shipped spaces {missing}"


def test_an_installed_wheel_finds_its_shipped_spaces(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = pip("install", "--target", target, wheel)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # PYTHONPATH comes before the venv's editable finder, so ipt_ray is the wheel's copy.
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_ALL],
        cwd=elsewhere,
        env={**_clean_env(), "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["package"]).is_relative_to(target)
    assert Path(result["folder"]) == target / "ipt_ray" / "tuning" / "spaces"
    assert sorted(result["loaded"]) == SHIPPED_NAMES
    assert all(Path(p).is_relative_to(target) for p in result["loaded"].values())
