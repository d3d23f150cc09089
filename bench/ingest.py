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
CONSUMERS = ["mosquitto_sub", "gateway x1", "gateway x2", "gateway x1 vm"]
MEASUREMENT = "counter"
POLL_S = 0.1
LATENCY_POLL_S = 0.02
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
    # (seconds since the first publish, points stored) at each poll
    curve: list[tuple[float, int]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Between 10 % and 90 % stored: the sustained rate, without the start
    # (connections, first batch) and the end (the last, partial batch waits
    # for flush_interval_s) of a finite burst.
    steady_rate: float = 0.0


def steady_rate(points: list[tuple[float, int]], total: int) -> float:
    """Return the rate between 10 % and 90 % of `total` along (time, count)."""
    low = next((t for t, count in points if count >= 0.1 * total), None)
    high = next((t for t, count in points if count >= 0.9 * total), None)
    if low is None or high is None or high <= low:
        return 0.0
    return 0.8 * total / (high - low)


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


class Victoria:
    """The local VictoriaMetrics, written through the v2 API; one label per run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.agency = f"a{uuid.uuid4().hex[:10]}"
        self.selector = f'{MEASUREMENT}_n{{agency="{self.agency}"}}'
        self.http = httpx.Client(base_url=url, timeout=30)

    def count(self) -> int:
        self.http.get("/internal/force_flush")
        response = self.http.get(
            "/api/v1/query",
            params={"query": f"sum(count_over_time({self.selector}[1d]))"},
        )
        response.raise_for_status()
        result = response.json()["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    # VictoriaMetrics keeps a sample sent twice twice: distinct is the count.
    distinct = count

    def drop(self) -> None:
        self.http.post(
            "/api/v1/admin/tsdb/delete_series",
            params={"match[]": f'{{agency="{self.agency}"}}'},
        )
        self.http.close()


def gateway_config(
    broker: Broker,
    store: Influx | Victoria,
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
{_sink_section(store)}[spool]
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


def _sink_section(store: Influx | Victoria) -> str:
    if isinstance(store, Victoria):
        return f'[influx]\nurl = "{store.url}"\napi = "v2"\n'
    return (
        f'[influx]\nurl = "{store.url}"\napi = "v1"\n'
        f'database = "{store.database}"\ncreate_database = false\n'
    )


def publisher_inputs(
    work: Path, prefix: str, messages: int, publishers: int, agency: str = "dishub"
) -> list[tuple[str, Path]]:
    """One (topic, file of payload lines) per publisher: its own device."""
    base_ms = int(time.time() * 1000) - 3_600_000
    inputs = []
    for index in range(publishers):
        numbers = range(index, messages, publishers)
        path = work / f"publisher-{index}.jsonl"
        path.write_text("".join(f'{{"ts":{base_ms + n},"n":{n}}}\n' for n in numbers))
        topic = f"{prefix}/{agency}/{MEASUREMENT}/{MEASUREMENT}-{index:02d}/telemetry"
        inputs.append((topic, path))
    return inputs


def publish(broker: Broker, inputs: list[tuple[str, Path]]) -> list[subprocess.Popen]:
    processes = []
    for topic, path in inputs:
        with open(path, "rb") as lines:
            processes.append(
                subprocess.Popen(
                    [
                        "mosquitto_pub",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(broker.port),
                        "-q",
                        "1",
                        "-t",
                        topic,
                        "-l",
                        "-M",
                        "1000",
                    ],
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
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-t",
            f"{prefix}/#",
            "-C",
            str(messages),
            "-F",
            "%U",
            "-V",
            "mqttv5",
        ],
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
    run.steady_rate = steady_rate(
        [(stamp, index + 1) for index, stamp in enumerate(stamps)], messages
    )
    return run


def start_gateways(
    broker: Broker,
    store: Influx | Victoria,
    prefix: str,
    instances: int,
    work: Path,
    max_inflight: int,
    tag: str,
) -> tuple[list[subprocess.Popen], list[Path]]:
    logs, gateways = [], []
    for index in range(instances):
        name = f"{tag}-{index}"
        config = gateway_config(
            broker, store, prefix, name, instances > 1, work, max_inflight
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
        wait_for(
            lambda log=log: "Subscribed to" in log.read_text(),
            30,
            f"the gateway to subscribe (see {log})",
        )
    return gateways, logs


def stop_gateways(gateways: list[subprocess.Popen], logs: list[Path]) -> int:
    """Stop the gateways cleanly; return the messages they received in all."""
    for process in gateways:
        process.send_signal(signal.SIGTERM)
    for process in gateways:
        process.wait(60)
    return sum(
        int(m.group(1)) for log in logs for m in STOPPED.finditer(log.read_text())
    )


def run_gateways(
    broker: Broker,
    store: Influx | Victoria,
    prefix: str,
    inputs: list[tuple[str, Path]],
    messages: int,
    instances: int,
    work: Path,
    max_inflight: int,
    name: str,
) -> Run:
    run = Run(name, messages)
    gateways, logs = start_gateways(
        broker, store, prefix, instances, work, max_inflight, name.replace(" ", "-")
    )
    cpu_before = [process_figures(g.pid)[0] for g in gateways]
    started = time.time()
    publishers = publish(broker, inputs)
    stored_at = None
    published = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if published is None and all(p.poll() is not None for p in publishers):
            published = time.time()
        count = store.count()
        run.curve.append((round(time.time() - started, 3), count))
        if count >= messages:
            stored_at = time.time()
            break
        time.sleep(POLL_S)
    figures = [process_figures(g.pid) for g in gateways]
    received = stop_gateways(gateways, logs)
    for process in publishers:
        process.wait(60)
    published = published or time.time()
    if stored_at is None:
        stored_at = time.time()
    run.seconds = stored_at - started
    run.rate = messages / run.seconds
    run.publish_rate = messages / (published - started)
    run.lost = max(0, messages - store.distinct())
    run.received_twice = max(0, received - messages)
    run.steady_rate = steady_rate(run.curve, messages)
    run.cpu_s = [
        round(cpu - before, 2) for (cpu, _), before in zip(figures, cpu_before)
    ]
    run.peak_rss_mb = [round(rss, 1) for _, rss in figures]
    return run


# --- latency: a paced publisher stamps each message's send time ---------------
def publish_paced(port: int, topic: str, rate: float, count: int, out: Path) -> None:
    """Publish `count` readings at `rate`/s at QoS 1; write each send time."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, f"bench-paced-{uuid.uuid4().hex[:8]}"
    )
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = []
    base_ms = int(time.time() * 1000) - 3_600_000
    start = time.perf_counter()
    wall = time.time() - start
    for n in range(count):
        due = start + n / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        now = time.perf_counter() + wall
        # A device time of its own per reading: two in one millisecond would
        # be one point in InfluxDB. The send time is kept aside instead.
        client.publish(topic, f'{{"ts":{base_ms + n},"n":{n}}}', qos=1)
        sent.append(now)
    time.sleep(0.5)
    client.loop_stop()
    client.disconnect()
    out.write_text(json.dumps(sent))


def run_latency(args: argparse.Namespace, broker: Broker, work: Path) -> Run:
    """One gateway, readings at a steady rate below its capacity: time from
    publish to visible in InfluxDB, matching the k-th sent with the k-th stored."""
    count = int(args.latency_rate * args.latency_seconds)
    run = Run(f"latency @ {args.latency_rate:,.0f}/s", count)
    influx = Influx(args.influx)
    prefix = f"bench/{uuid.uuid4().hex[:10]}"
    try:
        gateways, logs = start_gateways(
            broker, influx, prefix, 1, work, args.max_inflight, "latency"
        )
        sent_path = work / "sent.json"
        topic = f"{prefix}/dishub/{MEASUREMENT}/{MEASUREMENT}-00/telemetry"
        publisher = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--publish-paced",
                str(broker.port),
                topic,
                str(args.latency_rate),
                str(count),
                str(sent_path),
            ]
        )
        started = time.time()
        stored_at: list[tuple[float, int]] = []
        deadline = time.monotonic() + args.latency_seconds + 120
        while time.monotonic() < deadline:
            now = time.time()
            stored = influx.count()
            stored_at.append((now, stored))
            run.curve.append((round(now - started, 3), stored))
            if stored >= count:
                break
            time.sleep(LATENCY_POLL_S)
        publisher.wait(60)
        stop_gateways(gateways, logs)
        sent = json.loads(sent_path.read_text())
        run.lost = max(0, count - influx.distinct())
    finally:
        influx.drop()
    latencies = []
    index = 0
    for k, sent_time in enumerate(sent):
        while index < len(stored_at) and stored_at[index][1] < k + 1:
            index += 1
        if index == len(stored_at):
            break
        latencies.append((stored_at[index][0] - sent_time) * 1000)
    latencies.sort()
    if latencies:
        run.latency_ms = {
            "p50": round(latencies[len(latencies) // 2], 1),
            "p99": round(latencies[int(len(latencies) * 0.99)], 1),
            "max": round(latencies[-1], 1),
        }
    run.rate = args.latency_rate
    return run


def one_round(args: argparse.Namespace, consumers: list[str]) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="decor-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        try:
            for consumer in consumers:
                prefix = f"bench/{uuid.uuid4().hex[:10]}"
                if consumer == "mosquitto_sub":
                    inputs = publisher_inputs(
                        work, prefix, args.messages, args.publishers
                    )
                    runs.append(
                        run_mosquitto_sub(broker, prefix, inputs, args.messages)
                    )
                    continue
                instances = int(consumer.split()[1].removeprefix("x"))
                store = (
                    Victoria(args.victoria)
                    if consumer.endswith(" vm")
                    else Influx(args.influx)
                )
                agency = store.agency if isinstance(store, Victoria) else "dishub"
                inputs = publisher_inputs(
                    work, prefix, args.messages, args.publishers, agency
                )
                try:
                    runs.append(
                        run_gateways(
                            broker,
                            store,
                            prefix,
                            inputs,
                            args.messages,
                            instances,
                            work,
                            args.max_inflight,
                            consumer,
                        )
                    )
                finally:
                    store.drop()
            if args.latency_rate:
                runs.append(run_latency(args, broker, work))
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
    if len(sys.argv) > 1 and sys.argv[1] == "--publish-paced":
        port, topic, rate, count, out = sys.argv[2:7]
        publish_paced(int(port), topic, float(rate), int(count), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--influx", default="http://127.0.0.1:18086")
    parser.add_argument("--victoria", default="http://127.0.0.1:18428")
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=1000,
        help="the gateways' mqtt.max_inflight (default: the shipped 1000)",
    )
    parser.add_argument(
        "--consumers",
        default=",".join(CONSUMERS),
        help=f"comma-separated, from: {', '.join(CONSUMERS)}",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=2000,
        help="readings/s of the latency run (0: no latency run)",
    )
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--name", default="ingest", help="results file name")
    args = parser.parse_args()
    consumers = [name.strip() for name in args.consumers.split(",")]
    env = environment()
    rounds = []
    for index in range(args.rounds):
        runs = one_round(args, consumers)
        rounds.append(runs)
        for run in runs:
            extra = f", latency {run.latency_ms}" if run.latency_ms else ""
            print(
                f"round {index + 1}: {run.consumer:>16}: {run.rate:9,.0f} msg/s "
                f"(publishers {run.publish_rate:,.0f}/s), lost {run.lost}, "
                f"received twice {run.received_twice}, CPU s {run.cpu_s}, "
                f"peak RSS MB {run.peak_rss_mb}{extra}",
                flush=True,
            )
    env["load_after"] = os.getloadavg()
    table = markdown_table(consumers, rounds, args)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.date.today().isoformat()}-{args.name}"
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "config": vars(args),
                "environment": env,
                "rounds": [[asdict(run) for run in runs] for runs in rounds],
            },
            indent=2,
        )
    )
    stem.with_suffix(".md").write_text(table)
    plotted = plot(rounds, stem.with_suffix(".png"))
    print(f"\nwrote {stem.relative_to(REPO)}.json, .md" + (", .png" if plotted else ""))


def markdown_table(
    consumers: list[str], rounds: list[list[Run]], args: argparse.Namespace
) -> str:
    by_consumer: dict[str, list[Run]] = {}
    for runs in rounds:
        for run in runs:
            by_consumer.setdefault(run.consumer, []).append(run)
    throughput = {k: v for k, v in by_consumer.items() if not k.startswith("latency")}
    medians = {
        name: statistics.median(run.steady_rate for run in runs)
        for name, runs in throughput.items()
    }
    overall = {
        name: statistics.median(run.rate for run in runs)
        for name, runs in throughput.items()
    }
    baseline = medians.get("mosquitto_sub")
    one = medians.get("gateway x1")
    lines = [
        f"{args.messages:,} QoS 1 readings, {args.publishers} mosquitto_pub "
        f"publishers, {args.rounds} rounds, medians; {os.cpu_count()} CPUs shared "
        "by publishers, broker, gateways and the database. Sustained = the rate "
        "between 10 % and 90 % stored; whole run = all readings over the time "
        "from the first publish to the last stored.",
        "",
        "| consumer | sustained msg/s | vs mosquitto_sub | vs gateway x1 "
        "| whole run msg/s | lost | twice | CPU s / instance | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in throughput.items():
        rate = medians[name]
        vs_sub = f"{rate / baseline:.0%}" if baseline else "-"
        vs_one = f"{rate / one:.2f}x" if one and name.startswith("gateway") else "-"
        cpu = [c for run in runs for c in run.cpu_s]
        rss = [r for run in runs for r in run.peak_rss_mb]
        lines.append(
            f"| {name} | {rate:,.0f} | {vs_sub} | {vs_one} | {overall[name]:,.0f} "
            f"| {sum(r.lost for r in runs)} | {sum(r.received_twice for r in runs)} "
            f"| {round(statistics.median(cpu), 2) if cpu else '-'} "
            f"| {max(rss) if rss else '-'} |"
        )
    for name, runs in by_consumer.items():
        if not name.startswith("latency"):
            continue
        p50 = statistics.median(r.latency_ms.get("p50", float("nan")) for r in runs)
        p99 = statistics.median(r.latency_ms.get("p99", float("nan")) for r in runs)
        lines.append("")
        lines.append(
            f"Publish to stored, one gateway, {name.removeprefix('latency @ ')} "
            f"readings for {args.latency_seconds:.0f} s (k-th sent matched with "
            f"k-th stored, InfluxDB polled every {LATENCY_POLL_S * 1000:.0f} ms): "
            f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, lost {sum(r.lost for r in runs)}."
        )
    return "\n".join(lines) + "\n"


def plot(rounds: list[list[Run]], path: Path) -> bool:
    """Plot points stored over time for each run of the last round."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return False
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for run in rounds[-1]:
        if run.curve:
            axis.plot(
                [t for t, _ in run.curve], [c for _, c in run.curve], label=run.consumer
            )
    axis.set_xlabel("seconds since the first publish")
    axis.set_ylabel("readings stored")
    axis.set_title("End-to-end ingest, QoS 1, acknowledge after store")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


if __name__ == "__main__":
    main()
