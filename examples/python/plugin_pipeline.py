"""Weir's WASM stages from Python, notebook style: register the `uppercase` plugin, create
an exactly-once pipeline `example-raw` -> uppercase -> `example-loud`, produce, and read the
pipeline's output.

    python examples/python/plugin_pipeline.py [--broker HOST:PORT] [--wasm uppercase.wasm]

The plugin is built by scripts/build-plugins (plugins/examples/uppercase). Run it twice: the
second run finds the topics, plugin and pipeline from the first and reuses them.
"""

import argparse
import os
import pathlib
import time

import weir

REPO = pathlib.Path(__file__).resolve().parents[2]
WASM = REPO / "plugins" / "target" / "wasm32-unknown-unknown" / "release" / "uppercase.wasm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--wasm", default=str(WASM))
    args = parser.parse_args()
    client = weir.Client(args.broker)

    # 1. Topics.
    for topic in ["example-raw", "example-loud"]:
        if topic not in client.list_topics():
            client.create_topic(topic, partitions=2)

    # 2. The plugin: the module's bytes (or its path), validated and compiled by the broker.
    if "uppercase" not in {p.name for p in client.list_plugins()}:
        info = client.register_plugin("uppercase", pathlib.Path(args.wasm).read_bytes())
        print(f"registered {info.name}: {info.kind}, {info.size_bytes} bytes")

    # 3. The pipeline: every record of example-raw, uppercased, into example-loud, once.
    if "loud" not in {p.name for p in client.list_pipelines()}:
        client.create_pipeline(
            "loud", source="example-raw", destination="example-loud", plugins=[("uppercase", None)]
        )

    # 4. Produce, and wait until the pipeline has processed it all.
    with client.producer() as producer:
        for word in ["hello", "weir", "pipelines"]:
            producer.send("example-raw", word.encode())
    raw = sum(p.latest_offset for p in client.describe_topic("example-raw").partitions)
    while client.describe_pipeline("loud").records_in < raw:
        time.sleep(0.05)
    d = client.describe_pipeline("loud")
    print(f"pipeline {d.name}: {d.status}, {d.records_in} in, {d.records_out} out, lag {d.lag}")

    # 5. Read the output.
    words = sorted(r.value.decode() for r in client.consumer("example-loud", idle_timeout_ms=500))
    print("read:", " ".join(words))


if __name__ == "__main__":
    main()
