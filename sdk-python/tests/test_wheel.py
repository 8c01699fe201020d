"""The wheel scripts/test-python builds (`maturin build --release`: abi3, manylinux) installs
with pip into a fresh venv on a PATH without cargo or rustc, and works against a broker."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def the_wheel() -> pathlib.Path:
    given = os.environ.get("WEIR_WHEEL")
    if given:
        return pathlib.Path(given)
    wheels = sorted((REPO / "target" / "wheels").glob("weir-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        pytest.fail("no wheel in target/wheels: scripts/test-python builds it")
    return wheels[-1]


def test_the_wheel_installs_without_a_rust_toolchain(broker, tmp_path):
    wheel = the_wheel()
    # One build for every Python from 3.9 (the stable ABI), on any glibc Linux as old as the
    # tag says.
    assert "-abi3-" in wheel.name and "manylinux" in wheel.name, wheel.name
    path = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep)
        if not (pathlib.Path(d) / "cargo").exists() and not (pathlib.Path(d) / "rustc").exists()
    )
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{path}", "HOME": str(tmp_path)}
    # --no-index: the wheel or nothing (no source build to fall back on).
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--disable-pip-version-check", str(wheel)],
        check=True, env=env,
    )
    script = (
        "import weir\n"
        f"c = weir.Client({broker.addr!r})\n"
        "c.create_topic('from-wheel')\n"
        "with c.producer() as p:\n"
        "    m = p.send('from-wheel', b'hello').result(timeout=10)\n"
        "print(m.offset, [r.value for r in c.consumer('from-wheel', idle_timeout_ms=500)])\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 [b'hello']"
