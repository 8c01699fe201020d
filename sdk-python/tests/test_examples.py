"""examples/python run against a real broker, and type-check (mypy --strict) against the
stubs, which must match the native module (stubtest)."""

import json
import subprocess
import sys

from conftest import REPO, plugin_wasm

EXAMPLES = REPO / "examples" / "python"
BENCH = REPO / "sdk-python" / "benches" / "bench.py"


def example(broker, name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), "--broker", broker.addr, *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_producer_then_consumer_then_group(broker):
    assert example(broker, "producer.py", "--records", "500") == \
        "produced 500 records to example-orders\n"
    lines = example(broker, "consumer.py", "--idle-timeout", "500").splitlines()
    assert lines[-1] == "consumed 500 records"
    orders = [json.loads(line.split("\t")[3]) for line in lines[:-1]]
    assert sorted(o["order"] for o in orders) == list(range(500))

    out = example(broker, "group_consumer.py", "--idle-timeout", "1000").splitlines()
    assert out[-1] == "counted 500 orders from partitions [0, 1, 2]"
    totals = dict(line.split("\t") for line in out[:-1])
    assert sum(map(int, totals.values())) == sum(i * 3 % 97 for i in range(500))
    # The group committed everything: a second run counts nothing new.
    again = example(broker, "group_consumer.py", "--idle-timeout", "500").splitlines()
    assert again[-1].startswith("counted 0 orders")


def test_delivery_reports_example(broker):
    out = example(broker, "delivery_reports.py", "--records", "600").splitlines()
    # The 600 and the checkpoint, each reported once.
    assert out[-1] == "delivered 601 records, 0 failed"
    counts = [int(line.split("\t")[1].split()[0]) for line in out if line.startswith("partition")]
    assert sum(counts) == 601 and len(counts) == 3
    assert out[-2].startswith("checkpoint at partition ")


def test_plugin_pipeline_example(broker):
    out = example(broker, "plugin_pipeline.py", "--wasm", plugin_wasm("uppercase")).splitlines()
    assert out[0].startswith("registered uppercase: map, ")
    assert out[1] == "pipeline loud: running, 3 in, 3 out, lag 0"
    assert out[2] == "read: HELLO PIPELINES WEIR"
    again = example(broker, "plugin_pipeline.py", "--wasm", plugin_wasm("uppercase")).splitlines()
    assert again[-1] == "read: HELLO HELLO PIPELINES PIPELINES WEIR WEIR"


def test_asyncio_example(broker):
    out = example(broker, "asyncio_consumer.py", "--records", "3000").splitlines()
    assert out[-1] == "consumed 3000 records while producing them"


def test_the_benchmark_runs(broker):
    for api in ["sync", "aio"]:
        done = subprocess.run([sys.executable, str(BENCH), "--broker", broker.addr, "--api", api,
                               "--records", "3000"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs = [json.loads(line) for line in done.stdout.splitlines()]
        kinds = ["produce", "produce-handles"] + (["produce-on-delivery"] if api == "sync" else [])
        kinds += ["consume", "consume-poll-batch"]
        assert [(r["bench"], r["api"], r["records"]) for r in runs] == [(k, api, 3000) for k in kinds]


def test_stubs_match_the_module_and_examples_type_check():
    stubtest = subprocess.run([sys.executable, "-m", "mypy.stubtest", "weir"],
                              capture_output=True, text=True, cwd="/")
    assert stubtest.returncode == 0, stubtest.stdout + stubtest.stderr
    mypy = subprocess.run([sys.executable, "-m", "mypy", "--strict", str(EXAMPLES), str(BENCH)],
                          capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    # The tests use the API as the stubs describe it, too.
    tests = subprocess.run([sys.executable, "-m", "mypy", "--check-untyped-defs",
                            str(REPO / "sdk-python" / "tests")], capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout + tests.stderr
