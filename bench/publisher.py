"""The benchmarks' publisher, run as a child process so that it never competes with the
measuring process for the GIL.

Protocol on standard input/output: it loads the stream, connects, prints ``ready``; on the line
``go`` it publishes every message with QoS 1 (as fast as the broker accepts, or paced to
``--rate`` readings per second), waits for every PUBACK and prints one JSON line of timings.  A
``stop`` line (or end of input) ends a paced stream early.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import read_stream

# QoS 1 packet ids are 16 bits: stay well below their range.
MAX_INFLIGHT = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher")
    parser.add_argument("--stream", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default="bench-publisher")
    parser.add_argument("--rate", type=float, default=None, help="readings per second")
    args = parser.parse_args(argv)

    messages = read_stream(args.stream)
    acked = 0
    all_acked = threading.Event()
    connected = threading.Event()
    stop = threading.Event()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked >= published_target:
            all_acked.set()

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_: connected.set()
    client.on_publish = on_publish
    published_target = len(messages)
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        print("could not connect", file=sys.stderr)
        return 1
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        client.disconnect()
        client.loop_stop()
        return 1

    def watch_stdin() -> None:
        sys.stdin.readline()  # "stop", or end of input when the parent went away
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    interval = 0.0
    if args.rate:
        per_message = sum(m.readings for m in messages) / max(len(messages), 1)
        interval = per_message / args.rate
    published = readings = last_readings = 0
    t_first = time.time()
    start = time.monotonic()
    for index, message in enumerate(messages):
        if interval:
            if stop.is_set():
                break
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        client.publish(message.topic, message.payload, qos=1)
        published += 1
        readings += message.readings
        last_readings = message.readings
    t_last_publish = time.time()
    published_target = published
    if acked >= published_target:
        all_acked.set()
    complete = all_acked.wait(120)
    t_all_acked = time.time()
    client.disconnect()
    client.loop_stop()
    span = t_last_publish - t_first
    # Messages go out at the start of their slots: the last one's readings close no interval.
    rate = (readings - last_readings) / span if published > 1 and span > 0 else 0.0
    report = {
        "messages": published,
        "rate_readings_per_s": round(rate, 1),
        "readings": readings,
        "t_first": t_first,
        "t_last_publish": t_last_publish,
        "t_all_acked": t_all_acked,
        "complete": complete,
        "stopped_early": published < len(messages),
        "last_index": published - 1,
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    sys.stdout.flush()
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
