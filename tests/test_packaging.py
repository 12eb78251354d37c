"""Packaging: the sdist has what a build needs, wheels built from it have what an install
needs (and no sources), and an installed wheel loads its Lua scripts.

Slow (builds and a virtualenv): deselect with ``-m "not slow"``. Builds run with
``--no-isolation`` (setuptools and Cython come from the current environment); the
virtualenv installs the wheel's dependencies from the index or pip's cache.
"""

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LUA = sorted(p.relative_to(ROOT / "lua").as_posix() for p in (ROOT / "lua").rglob("*.lua"))  # with cluster/
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def core():
    """Overrides conftest's per-core parametrization: these tests don't use a core."""


def run(args, cwd, env=None, timeout=300):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def build_env(**extra):
    env = dict(os.environ)
    env.pop("SHARQ_FAST_NO_EXTENSIONS", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out], ROOT, build_env())
    (path,) = out.glob("sharq[-_]fast-*.tar.gz")  # older setuptools keep the dash
    return path


@pytest.fixture(scope="module")
def unpacked(sdist, tmp_path_factory) -> Path:
    """The sdist, extracted: wheels are built from it, not from the repository."""
    dest = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(sdist) as tar:
        tar.extractall(dest)
    (top,) = dest.iterdir()
    return top


def build_wheel(source: Path, out: Path, **env) -> Path:
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out], source, build_env(**env))
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def wheel(unpacked, tmp_path_factory) -> Path:
    return build_wheel(unpacked, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def pure_wheel(unpacked, tmp_path_factory) -> Path:
    return build_wheel(unpacked, tmp_path_factory.mktemp("pure"), SHARQ_FAST_NO_EXTENSIONS="1")


def test_sdist_contents(sdist):
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {f"lua/{name}" for name in LUA} <= names
    assert len(LUA) >= 6
    assert {
        "src/sharq_fast/_core_c.pyx",
        "src/sharq_fast/_core_c.pyi",
        "src/sharq_fast/py.typed",
        "src/sharq_fast/_core_py.py",
        "setup.py",
        "pyproject.toml",
    } <= names
    assert not any(name.endswith((".so", ".pyd")) for name in names)


def test_wheel_from_sdist_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"sharq_fast/lua/{name}" for name in LUA} <= names
    assert {"sharq_fast/py.typed", "sharq_fast/_core_c.pyi", "sharq_fast/_core_py.py"} <= names
    # compare --peers: its drivers, the Node one included.
    assert {"sharq_fast/peers/runner.py", "sharq_fast/peers/drivers/_drvlib.py", "sharq_fast/peers/drivers/peer_bullmq.cjs"} <= names
    assert [n for n in names if n.startswith("sharq_fast/_core_c.") and n.endswith((".so", ".pyd"))]
    assert not [n for n in names if n.endswith((".pyx", ".c"))]
    assert "-py3-none-any" not in wheel.name


def test_pure_wheel(pure_wheel):
    assert pure_wheel.name.endswith("-py3-none-any.whl")
    names = set(zipfile.ZipFile(pure_wheel).namelist())
    assert {f"sharq_fast/lua/{name}" for name in LUA} <= names
    assert "sharq_fast/py.typed" in names
    assert not [n for n in names if n.endswith((".so", ".pyd", ".pyx", ".c"))]


CHECK = """
import sys, sharq_fast
from sharq_fast.scripts import load_scripts
assert "{root}" not in sharq_fast.__file__, sharq_fast.__file__
assert sharq_fast.USE_EXTENSIONS is True, "the compiled core did not load"
scripts = load_scripts()
assert sorted(scripts) == sorted({names!r}), sorted(scripts)
from sharq_fast.scripts import load_cluster_scripts
assert "dequeue" in load_cluster_scripts() and "lock" in load_cluster_scripts()
client = sharq_fast.Client("redis://127.0.0.1:1/0")
assert client.settings.scripts["enqueue"].source.startswith(b"--")
client.close()
print("ok", sharq_fast.__file__)
"""


def test_wheel_installs_in_a_fresh_virtualenv(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], tmp_path, timeout=600)
    names = [name[: -len(".lua")] for name in LUA if "/" not in name and not name.startswith("_")]  # _replies: a prelude
    script = CHECK.format(root=str(ROOT / "src"), names=names)
    env = build_env()
    env.pop("PYTHONPATH", None)
    result = run([python, "-c", script], tmp_path, env)
    assert result.stdout.startswith("ok") and str(venv) in result.stdout
