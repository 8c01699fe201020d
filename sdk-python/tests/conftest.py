"""Starts a real weir-broker on a temp dir and a free port for each test that asks for one.

The binaries come from WEIR_BROKER_BIN / WEIR_CLI_BIN, else the repo's target/debug (built by
the README's test command before pytest runs).
"""

import os
import pathlib
import socket
import subprocess
import time

import pytest

import weir

REPO = pathlib.Path(__file__).resolve().parents[2]


def binary(env: str, name: str) -> str:
    path = os.environ.get(env) or str(REPO / "target" / "debug" / name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it first (cargo build --workspace)")
    return path


def plugin_wasm(name: str) -> str:
    """An example plugin's module, built by scripts/build-plugins."""
    path = REPO / "plugins" / "target" / "wasm32-unknown-unknown" / "release" / f"{name.replace('-', '_')}.wasm"
    if not path.exists():
        pytest.fail(f"{path} is missing: build the plugins first (scripts/build-plugins)")
    return str(path)


class Broker:
    def __init__(self, data_dir: pathlib.Path, listen: str = "127.0.0.1:0", *flags: str):
        self.proc = subprocess.Popen(
            [binary("WEIR_BROKER_BIN", "weir-broker"), "--data-dir", str(data_dir),
             "--listen", listen, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        prefix = "weir-broker listening on "
        if not line.startswith(prefix):
            self.proc.kill()
            raise RuntimeError(f"broker did not start: {line!r}")
        self.addr = line[len(prefix):]
        # With --kafka-listen, a second line names the Kafka port.
        self.kafka = None
        if "--kafka-listen" in flags:
            line = self.proc.stdout.readline().strip()
            prefix = "weir-broker kafka listening on "
            if not line.startswith(prefix):
                self.proc.kill()
                raise RuntimeError(f"no kafka listening line: {line!r}")
            self.kafka = line[len(prefix):]

    def client(self) -> weir.Client:
        return weir.Client(self.addr)

    def run_cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        """Runs the `weir` CLI against this broker."""
        return subprocess.run(
            [binary("WEIR_CLI_BIN", "weir"), "--broker", self.addr, *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )

    def cli(self, *args: str, stdin: str = "") -> str:
        """Runs the `weir` CLI against this broker; returns its stdout (fails on exit ≠ 0)."""
        done = self.run_cli(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def group_owners(self, group: str) -> dict[str, list[int]]:
        """Partitions per member of `group`, from `weir group describe`."""
        done = self.run_cli("group", "describe", group)
        if "does not exist" in done.stderr:
            return {}
        assert done.returncode == 0, done.stderr
        owned: dict[str, list[int]] = {}
        for row in done.stdout.splitlines()[1:]:
            _topic, partition, _committed, _end, _lag, member = row.split("\t")
            if member != "-":
                owned.setdefault(member, []).append(int(partition))
        return owned

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Cluster:
    """Three brokers on 127.0.0.1 forming one cluster (`--node-id`, `--cluster`); node i is
    `brokers[i - 1]`. Short session and lag timeouts, so failovers take about 2 s."""

    def __init__(self, tmp: pathlib.Path, n: int = 3, *flags: str):
        held = [socket.socket() for _ in range(n)]
        for s in held:
            s.bind(("127.0.0.1", 0))
        addrs = [f"127.0.0.1:{s.getsockname()[1]}" for s in held]
        for s in held:
            s.close()
        spec = ",".join(f"{i + 1}={a}" for i, a in enumerate(addrs))
        self.brokers = [
            Broker(tmp / f"node{i + 1}", addr, "--node-id", str(i + 1), "--cluster", spec,
                   "--session-timeout-ms", "2000", "--replica-lag-max-ms", "2000", *flags)
            for i, addr in enumerate(addrs)
        ]
        deadline = time.monotonic() + 30
        while self.brokers[0].run_cli("cluster", "status").returncode != 0:
            assert time.monotonic() < deadline, "no controller elected"
            time.sleep(0.1)

    def bootstrap(self, first: int = 1) -> str:
        """Every member's address, comma-separated, starting with node `first`."""
        addrs = [b.addr for b in self.brokers]
        i = first - 1
        return ",".join(addrs[i:] + addrs[:i])

    def stop(self) -> None:
        for b in self.brokers:
            if b.proc.poll() is None:
                b.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data")
    yield b
    b.stop()


@pytest.fixture
def kafka_broker(tmp_path):
    """A broker that also serves the Kafka protocol (`--kafka-listen`); `.kafka` is its
    address."""
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0")
    yield b
    b.stop()
