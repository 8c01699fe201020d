"""Starts a real weir-broker on a temp dir and a free port for each test that asks for one."""

import os
import pathlib
import subprocess

import pytest

import weir

REPO = pathlib.Path(__file__).resolve().parents[2]


def broker_binary() -> str:
    path = os.environ.get("WEIR_BROKER_BIN") or str(REPO / "target" / "debug" / "weir-broker")
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it first (cargo build -p weir-broker)")
    return path


class Broker:
    def __init__(self, data_dir: pathlib.Path):
        self.proc = subprocess.Popen(
            [broker_binary(), "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        prefix = "weir-broker listening on "
        if not line.startswith(prefix):
            self.proc.kill()
            raise RuntimeError(f"broker did not start: {line!r}")
        self.addr = line[len(prefix):]

    def client(self) -> weir.Client:
        return weir.Client(self.addr)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data")
    yield b
    b.stop()
