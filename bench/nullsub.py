"""A paho-mqtt subscriber that does nothing with what it receives: the ceiling of a Python
client on the hub's MQTT library.

Prints ``subscribed`` once the broker granted the subscription, then one JSON line with the
wall-clock time the ``--count``-th message arrived.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nullsub")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    received = 0
    t_first = t_last = 0.0

    def on_connect(client: paho.Client, *_: Any) -> None:
        client.subscribe(args.topic, qos=1)

    def on_subscribe(*_: Any) -> None:
        print("subscribed", flush=True)

    def on_message(client: paho.Client, _userdata: Any, _msg: paho.MQTTMessage) -> None:
        nonlocal received, t_first, t_last
        received += 1
        if received == 1:
            t_first = time.time()
        if received >= args.count:
            t_last = time.time()
            client.disconnect()

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="bench-nullsub",
        protocol=paho.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60)
    deadline = time.monotonic() + args.timeout
    while received < args.count and time.monotonic() < deadline:
        client.loop(timeout=0.5)
    report = {"received": received, "t_first": t_first, "t_last": t_last}
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    sys.stdout.flush()
    return 0 if received >= args.count else 1


if __name__ == "__main__":
    sys.exit(main())
