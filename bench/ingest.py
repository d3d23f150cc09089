"""End to end: numbered QoS 1 readings through Mosquitto into InfluxDB 1.x.

How fast the gateway stores a stream of JSON readings when it acknowledges
each message only once its point is in InfluxDB (or the spool), against the
broker's own delivery of the same stream to `mosquitto_sub` (the baseline,
measured in the same round on the same broker), with one gateway process and
with two on one shared subscription (`$share/<group>/...`).

A round, for each consumer in turn: a private Mosquitto running the shipped
config/mosquitto.conf; the consumer connects and subscribes (a persistent
session); then `--publishers` mosquitto_pub processes publish `--messages`
readings `{"ts": <device ms>, "n": <number>}` at QoS 1 as fast as they can.
Rate = messages / (last stored - first published). For the gateway "stored"
means counted by `SELECT count(n)` in InfluxDB (polled every 0.1 s); for
mosquitto_sub, the time it printed its last message. Each gateway's CPU
seconds and peak RSS come from /proc; readings lost = messages - distinct
numbers stored (must be 0); messages received twice come from the gateway's
own count at stop.

    .venv/bin/python bench/ingest.py --messages 50000 --rounds 3

Needs the local InfluxDB 1.x of `scripts/services up` (or `--influx URL`).
Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-ingest.json.
Not measured here yet: latency from publish to stored (p50/p99).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SHIPPED_BROKER_SETTINGS = REPO / "config" / "mosquitto.conf"
DECOR = str(Path(sys.executable).with_name("decor"))
RESULTS = REPO / "bench" / "results"
CONSUMERS = ["mosquitto_sub", "gateway x1", "gateway x2"]
MEASUREMENT = "counter"
POLL_S = 0.1
STOPPED = re.compile(r"Stopped after (\d+) messages")


@dataclass
class Run:
    consumer: str
    messages: int
    seconds: float = 0.0
    rate: float = 0.0
    publish_rate: float = 0.0
    lost: int = 0
    received_twice: int = 0
    cpu_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """A private Mosquitto with the shipped settings, as a deployment runs it."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        (directory / "data").mkdir(parents=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence_location {directory / 'data'}/",
            f"include_dir {directory / 'conf.d'}",
        ]
        if os.geteuid() == 0:
            lines.insert(2, "user root")
        (directory / "conf.d").mkdir()
        shutil.copy(SHIPPED_BROKER_SETTINGS, directory / "conf.d" / "decor.conf")
        config = directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self.log = open(directory / "broker.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(config)], stdout=self.log, stderr=self.log
        )
        wait_for(lambda: port_open(self.port), 10, "Mosquitto to listen")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


class Influx:
    """A fresh database on the local InfluxDB 1.x, dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = f"bench_{uuid.uuid4().hex[:10]}"
        self.http = httpx.Client(base_url=url, timeout=30)
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")

    def query(self, text: str, method: str = "GET") -> list:
        response = self.http.request(
            method, "/query", params={"db": self.database, "q": text}
        )
        response.raise_for_status()
        [result] = response.json()["results"]
        series = result.get("series") or [{}]
        return series[0].get("values", [])

    def count(self) -> int:
        values = self.query(f"SELECT count(n) FROM {MEASUREMENT}")
        return int(values[0][1]) if values else 0

    def distinct(self) -> int:
        values = self.query(f"SELECT count(distinct(n)) FROM {MEASUREMENT}")
        return int(values[0][1]) if values else 0

    def drop(self) -> None:
        self.query(f'DROP DATABASE "{self.database}"', method="POST")
        self.http.close()


def gateway_config(
    broker: Broker,
    influx: Influx,
    prefix: str,
    name: str,
    shared: bool,
    work: Path,
    max_inflight: int,
) -> Path:
    topic = f"{prefix}/+/+/+/telemetry"
    if shared:
        topic = f"$share/bench-{prefix.rsplit('/', 1)[-1]}/{topic}"
    text = f"""\
log_level = "info"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
client_id = "bench-{name}-{uuid.uuid4().hex[:8]}"
clean_start = false
session_expiry_s = 3600
max_inflight = {max_inflight}
[influx]
url = "{influx.url}"
api = "v1"
database = "{influx.database}"
create_database = false
[spool]
path = "{work / f"spool-{name}"}"
[dead_letters]
path = "{work / f"dead-letters-{name}.jsonl"}"
[[subscriptions]]
topic = "{topic}"
topic_template = "{prefix}/{{agency}}/{{device_type}}/{{device_id}}/telemetry"
measurement = "{{device_type}}"
timestamp_key = "ts"
timestamp_unit = "ms"
fields = {{ n = "integer" }}
"""
    path = work / f"gateway-{name}.toml"
    path.write_text(text)
    return path


def publisher_inputs(
    work: Path, prefix: str, messages: int, publishers: int
) -> list[tuple[str, Path]]:
    """One (topic, file of payload lines) per publisher: its own device."""
    base_ms = int(time.time() * 1000) - 3_600_000
    inputs = []
    for index in range(publishers):
        numbers = range(index, messages, publishers)
        path = work / f"publisher-{index}.jsonl"
        path.write_text(
            "".join(f'{{"ts":{base_ms + n},"n":{n}}}\n' for n in numbers)
        )
        topic = f"{prefix}/dishub/{MEASUREMENT}/{MEASUREMENT}-{index:02d}/telemetry"
        inputs.append((topic, path))
    return inputs


def publish(broker: Broker, inputs: list[tuple[str, Path]]) -> list[subprocess.Popen]:
    processes = []
    for topic, path in inputs:
        with open(path, "rb") as lines:
            processes.append(
                subprocess.Popen(
                    ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port),
                     "-q", "1", "-t", topic, "-l", "-M", "1000"],
                    stdin=lines,
                )
            )
    return processes


def process_figures(pid: int) -> tuple[float, float]:
    """Return (CPU seconds used, peak RSS in MB) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    return cpu_s, peak_kb / 1024


def run_mosquitto_sub(
    broker: Broker, prefix: str, inputs: list[tuple[str, Path]], messages: int
) -> Run:
    run = Run("mosquitto_sub", messages)
    consumer = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
         "-t", f"{prefix}/#", "-C", str(messages), "-F", "%U", "-V", "mqttv5"],
        stdout=subprocess.PIPE,
    )
    time.sleep(0.5)  # subscribed well before the first publish
    started = time.time()
    publishers = publish(broker, inputs)
    for process in publishers:
        process.wait()
    published = time.time()
    out, _ = consumer.communicate(timeout=600)
    stamps = [float(line.split()[0]) for line in out.decode().splitlines() if line]
    run.seconds = stamps[-1] - started
    run.rate = messages / run.seconds
    run.publish_rate = messages / (published - started)
    run.lost = messages - len(stamps)
    return run


def run_gateways(
    broker: Broker,
    influx: Influx,
    prefix: str,
    inputs: list[tuple[str, Path]],
    messages: int,
    instances: int,
    work: Path,
    max_inflight: int,
) -> Run:
    run = Run(f"gateway x{instances}", messages)
    logs, gateways = [], []
    for index in range(instances):
        name = f"{instances}-{index}"
        config = gateway_config(
            broker, influx, prefix, name, instances > 1, work, max_inflight
        )
        log = work / f"gateway-{name}.log"
        logs.append(log)
        with open(log, "wb") as out:
            gateways.append(
                subprocess.Popen(
                    [DECOR, "run", "--config", str(config), "--no-summary"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    for log in logs:
        wait_for(lambda log=log: "Subscribed to" in log.read_text(), 30,
                 f"the gateway to subscribe (see {log})")
    cpu_before = [process_figures(g.pid)[0] for g in gateways]
    started = time.time()
    publishers = publish(broker, inputs)
    stored_at = None
    published = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if published is None and all(p.poll() is not None for p in publishers):
            published = time.time()
        if influx.count() >= messages:
            stored_at = time.time()
            break
        time.sleep(POLL_S)
    figures = [process_figures(g.pid) for g in gateways]
    for process in gateways:
        process.send_signal(signal.SIGTERM)
    for process in gateways:
        process.wait(60)
    for process in publishers:
        process.wait(60)
    published = published or time.time()
    if stored_at is None:
        stored_at = time.time()
    run.seconds = stored_at - started
    run.rate = messages / run.seconds
    run.publish_rate = messages / (published - started)
    run.lost = messages - influx.distinct()
    received = sum(
        int(m.group(1)) for log in logs for m in STOPPED.finditer(log.read_text())
    )
    run.received_twice = max(0, received - messages)
    run.cpu_s = [round(cpu - before, 2) for (cpu, _), before in zip(figures, cpu_before)]
    run.peak_rss_mb = [round(rss, 1) for _, rss in figures]
    return run


def one_round(args: argparse.Namespace, consumers: list[str]) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="decor-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        try:
            for consumer in consumers:
                prefix = f"bench/{uuid.uuid4().hex[:10]}"
                inputs = publisher_inputs(work, prefix, args.messages, args.publishers)
                if consumer == "mosquitto_sub":
                    runs.append(run_mosquitto_sub(broker, prefix, inputs, args.messages))
                    continue
                influx = Influx(args.influx)
                try:
                    instances = int(consumer.rsplit("x", 1)[1])
                    runs.append(
                        run_gateways(broker, influx, prefix, inputs, args.messages,
                                     instances, work, args.max_inflight)
                    )
                finally:
                    influx.drop()
        finally:
            broker.stop()
    return runs


def environment() -> dict[str, object]:
    mosquitto = subprocess.run(
        ["mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "mosquitto": mosquitto,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--influx", default="http://127.0.0.1:18086")
    parser.add_argument(
        "--max-inflight", type=int, default=1000,
        help="the gateways' mqtt.max_inflight (default: the shipped 1000)",
    )
    parser.add_argument(
        "--consumers", default=",".join(CONSUMERS),
        help=f"comma-separated, from: {', '.join(CONSUMERS)}",
    )
    args = parser.parse_args()
    consumers = [name.strip() for name in args.consumers.split(",")]
    env = environment()
    rounds = []
    for index in range(args.rounds):
        runs = one_round(args, consumers)
        rounds.append(runs)
        for run in runs:
            print(
                f"round {index + 1}: {run.consumer:>13}: {run.rate:9,.0f} msg/s "
                f"(publishers {run.publish_rate:,.0f}/s), lost {run.lost}, "
                f"received twice {run.received_twice}, CPU s {run.cpu_s}, "
                f"peak RSS MB {run.peak_rss_mb}",
                flush=True,
            )
    env["load_after"] = os.getloadavg()
    print_table(consumers, rounds, args)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.date.today().isoformat()}-ingest.json"
    out.write_text(
        json.dumps(
            {
                "config": vars(args),
                "environment": env,
                "rounds": [[asdict(run) for run in runs] for runs in rounds],
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(REPO)}")


def print_table(
    consumers: list[str], rounds: list[list[Run]], args: argparse.Namespace
) -> None:
    by_consumer = {name: [runs[i] for runs in rounds] for i, name in enumerate(consumers)}
    medians = {
        name: statistics.median(run.rate for run in runs)
        for name, runs in by_consumer.items()
    }
    baseline = medians.get("mosquitto_sub")
    one = medians.get("gateway x1")
    print(
        f"\n{args.messages:,} QoS 1 readings, {args.publishers} publishers, "
        f"{args.rounds} rounds; medians\n"
    )
    print("| consumer | msg/s | vs mosquitto_sub | vs gateway x1 | lost | twice "
          "| CPU s / instance | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in by_consumer.items():
        rate = medians[name]
        vs_sub = f"{rate / baseline:.0%}" if baseline else "-"
        vs_one = f"{rate / one:.2f}x" if one and name.startswith("gateway") else "-"
        cpu = [c for run in runs for c in run.cpu_s]
        rss = [r for run in runs for r in run.peak_rss_mb]
        print(
            f"| {name} | {rate:,.0f} | {vs_sub} | {vs_one} "
            f"| {sum(r.lost for r in runs)} | {sum(r.received_twice for r in runs)} "
            f"| {statistics.median(cpu) if cpu else '-'} "
            f"| {max(rss) if rss else '-'} |"
        )


if __name__ == "__main__":
    main()
