"""Prints the records of `example-orders`, from the oldest kept one.

    python examples/python/consumer.py [--broker HOST:PORT] [--from earliest|latest|OFFSET]
                                       [--idle-timeout MS] [--plugin NAME[=JSON]]...

Stops after --idle-timeout ms with nothing new (default 2000; 0 follows forever, Ctrl-C stops).
--plugin runs a registered WASM plugin in the broker on every batch before it is sent here,
e.g. --plugin 'contains={"substring": "customer-7"}' after
`weir plugin register contains plugins/target/wasm32-unknown-unknown/release/filter_contains.wasm`.
"""

import argparse
import json
import os
from typing import Any, Optional, Union

import weir

TOPIC = "example-orders"


def plugin(arg: str) -> tuple[str, Optional[dict[str, Any]]]:
    name, _, params = arg.partition("=")
    return name, (json.loads(params) if params else None)


def start(arg: str) -> Union[str, int]:
    return int(arg) if arg.isdigit() else arg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--from", dest="start", type=start, default="earliest")
    parser.add_argument("--idle-timeout", type=int, default=2000)
    parser.add_argument("--plugin", type=plugin, action="append", default=[])
    args = parser.parse_args()

    client = weir.Client(args.broker)
    consumer = client.consumer(
        TOPIC,
        start=args.start,
        plugins=args.plugin,
        idle_timeout_ms=args.idle_timeout or None,
    )
    n = 0
    try:
        for rec in consumer:
            key = rec.key.decode() if rec.key is not None else None
            print(f"{rec.partition}\t{rec.offset}\t{key}\t{rec.value.decode()}")
            n += 1
    except KeyboardInterrupt:
        pass
    print(f"consumed {n} records")


if __name__ == "__main__":
    main()
