"""The same stream through Node-RED, the tool a city would otherwise pick.

Numbered QoS 1 readings `{"ts": <device ms>, "n": <number>}` from
`--publishers` mosquitto_pub processes, through a private Mosquitto with the
shipped settings, into a fresh database on the local InfluxDB 1.x, by:

- `gateway x1`: one `decor run` (acknowledge after store, spool on);
- `node-red batch`: mqtt in (QoS 1, parsed JSON) -> function (one point with
  the device time) -> join (1,000 messages or 1 s) -> `influxdb batch` of
  node-red-contrib-influxdb: the flow a careful Node-RED user builds;
- `node-red default`: mqtt in -> function -> `influxdb out`, one write per
  message: the flow of the contrib package's own examples.

Rate = readings stored / (last stored - first published); a run ends when all
are stored or nothing more was stored for `--stall-s`; readings lost = sent -
stored (Node-RED acknowledges on receipt, so what it cannot write is gone).
Node-RED and its nodes are installed from npm into bench/.peer on first use
(pinned below; needs node and npm).

    .venv/bin/python bench/peer.py --messages 30000 --rounds 2

Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-peer.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ingest import (
    REPO,
    RESULTS,
    Broker,
    Influx,
    Run,
    environment,
    free_port,
    port_open,
    publish,
    publisher_inputs,
    run_gateways,
    steady_rate,
    wait_for,
)

PEER_DIR = REPO / "bench" / ".peer"
PACKAGES = {"node-red": "4.1.15", "node-red-contrib-influxdb": "0.7.0"}
FLOWS = ["node-red batch", "node-red default"]
MEASUREMENT = "counter"
POLL_S = 0.2


def install_node_red() -> Path:
    """Install the pinned Node-RED into bench/.peer if it is not there yet."""
    binary = PEER_DIR / "node_modules" / ".bin" / "node-red"
    installed = PEER_DIR / "installed.json"
    if binary.exists() and installed.exists():
        if json.loads(installed.read_text()) == PACKAGES:
            return binary
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {PACKAGES} from npm into {PEER_DIR} ...", flush=True)
    subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(PEER_DIR),
        ]
        + [f"{name}@{version}" for name, version in PACKAGES.items()],
        check=True,
    )
    installed.write_text(json.dumps(PACKAGES))
    return binary


def flow(kind: str, broker_port: int, influx: Influx, topic: str) -> list[dict]:
    """Return a Node-RED flow file of one kind."""
    broker = {
        "id": "broker",
        "type": "mqtt-broker",
        "name": "bench",
        "broker": "127.0.0.1",
        "port": str(broker_port),
        "clientid": f"node-red-{uuid.uuid4().hex[:8]}",
        "autoConnect": True,
        "usetls": False,
        "protocolVersion": "4",
        "keepalive": "60",
        "cleansession": True,
    }
    database = {
        "id": "influx",
        "type": "influxdb",
        "hostname": "127.0.0.1",
        "port": influx.url.rsplit(":", 1)[1],
        "protocol": "http",
        "database": influx.database,
        "name": "bench",
        "usetls": False,
        "influxdbVersion": "1.x",
    }
    tab = {"id": "tab", "type": "tab", "label": "bench"}
    subscribe = {
        "id": "in",
        "type": "mqtt in",
        "z": "tab",
        "topic": topic,
        "qos": "1",
        "datatype": "json",
        "broker": "broker",
        "nl": False,
        "rap": False,
        "inputs": 0,
        "wires": [["shape"]],
    }
    device = "msg.topic.split('/')[3]"
    if kind == "node-red default":
        shape_code = (
            f"msg.payload = [{{n: msg.payload.n, time: msg.payload.ts}}, "
            f"{{device_id: {device}}}]; return msg;"
        )
        out = {
            "id": "out",
            "type": "influxdb out",
            "z": "tab",
            "influxdb": "influx",
            "measurement": MEASUREMENT,
            "precision": "ms",
            "retentionPolicy": "",
            "wires": [],
        }
        nodes = [out]
        shape_wires = [["out"]]
    else:
        shape_code = (
            f"msg.payload = {{measurement: '{MEASUREMENT}', "
            f"fields: {{n: msg.payload.n}}, tags: {{device_id: {device}}}, "
            "timestamp: msg.payload.ts}; return msg;"
        )
        join = {
            "id": "join",
            "type": "join",
            "z": "tab",
            "mode": "custom",
            "build": "array",
            "property": "payload",
            "propertyType": "msg",
            "key": "topic",
            "joiner": "\\n",
            "joinerType": "str",
            "accumulate": False,
            "timeout": "1",
            "count": "1000",
            "reduceRight": False,
            "wires": [["batch"]],
        }
        batch = {
            "id": "batch",
            "type": "influxdb batch",
            "z": "tab",
            "influxdb": "influx",
            "precision": "ms",
            "retentionPolicy": "",
            "wires": [],
        }
        nodes = [join, batch]
        shape_wires = [["join"]]
    shape = {
        "id": "shape",
        "type": "function",
        "z": "tab",
        "func": shape_code,
        "outputs": 1,
        "wires": shape_wires,
    }
    nodes = [tab, broker, database, subscribe, shape, *nodes]
    # Node ids must not look like node types or other values (Node-RED then
    # sees a dependency where there is none): give each a hex id.
    ids = {node["id"]: uuid.uuid4().hex[:16] for node in nodes}
    for node in nodes:
        node["id"] = ids[node["id"]]
        for key in ("z", "broker", "influxdb"):
            if key in node and node[key] in ids:
                node[key] = ids[node[key]]
        if "wires" in node:
            node["wires"] = [[ids[w] for w in out] for out in node["wires"]]
    return nodes


def run_node_red(
    kind: str, binary: Path, broker: Broker, args: argparse.Namespace, work: Path
) -> Run:
    run = Run(kind, args.messages)
    influx = Influx(args.influx)
    prefix = f"bench/{uuid.uuid4().hex[:10]}"
    user_dir = work / f"node-red-{kind.split()[-1]}"
    user_dir.mkdir()
    flows = user_dir / "flows.json"
    flows.write_text(json.dumps(flow(kind, broker.port, influx, f"{prefix}/#")))
    port = free_port()
    (user_dir / "settings.js").write_text(
        "module.exports = { uiPort: %d, uiHost: '127.0.0.1', "
        "flowFile: 'flows.json', credentialSecret: false, "
        "logging: { console: { level: 'warn' } } };\n" % port
    )
    log = user_dir / "node-red.log"
    with open(log, "wb") as out:
        node_red = subprocess.Popen(
            [
                str(binary),
                "--userDir",
                str(user_dir),
                "--settings",
                str(user_dir / "settings.js"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: port_open(port), 60, f"Node-RED to start (see {log})")
        time.sleep(2.0)  # its MQTT node connects and subscribes after start-up
        inputs = publisher_inputs(work, prefix, args.messages, args.publishers)
        started = time.time()
        publishers = publish(broker, inputs)
        last_count, last_change = 0, time.time()
        published = None
        while True:
            if published is None and all(p.poll() is not None for p in publishers):
                published = time.time()
            count = influx.count()
            now = time.time()
            run.curve.append((round(now - started, 3), count))
            if count != last_count:
                last_count, last_change = count, now
            if count >= args.messages or now - last_change > args.stall_s:
                break
            time.sleep(POLL_S)
        for process in publishers:
            process.wait(60)
        run.seconds = last_change - started
        run.rate = last_count / run.seconds if run.seconds > 0 else 0.0
        run.publish_rate = args.messages / ((published or time.time()) - started)
        run.lost = args.messages - influx.distinct()
        run.steady_rate = steady_rate(run.curve, args.messages)
    finally:
        node_red.terminate()
        node_red.wait(30)
        influx.drop()
    return run


def one_round(
    args: argparse.Namespace, binary: Path, consumers: list[str]
) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="decor-peer-") as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        try:
            for consumer in consumers:
                if consumer.startswith("node-red"):
                    runs.append(run_node_red(consumer, binary, broker, args, work))
                    continue
                influx = Influx(args.influx)
                prefix = f"bench/{uuid.uuid4().hex[:10]}"
                inputs = publisher_inputs(work, prefix, args.messages, args.publishers)
                try:
                    runs.append(
                        run_gateways(
                            broker,
                            influx,
                            prefix,
                            inputs,
                            args.messages,
                            1,
                            work,
                            1000,
                            "gateway x1",
                        )
                    )
                finally:
                    influx.drop()
        finally:
            broker.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--influx", default="http://127.0.0.1:18086")
    parser.add_argument(
        "--stall-s",
        type=float,
        default=10.0,
        help="end a run when nothing more is stored for this long",
    )
    parser.add_argument(
        "--consumers",
        default=",".join(["gateway x1", *FLOWS]),
        help="comma-separated, from: gateway x1, " + ", ".join(FLOWS),
    )
    args = parser.parse_args()
    consumers = [name.strip() for name in args.consumers.split(",")]
    binary = install_node_red()
    env = environment() | {"node_red": PACKAGES}
    rounds = []
    for index in range(args.rounds):
        runs = one_round(args, binary, consumers)
        rounds.append(runs)
        for run in runs:
            print(
                f"round {index + 1}: {run.consumer:>16}: {run.rate:9,.0f} readings/s "
                f"(publishers {run.publish_rate:,.0f}/s), lost {run.lost}",
                flush=True,
            )
    env["load_after"] = os.getloadavg()
    table = markdown_table(rounds, args)
    print("\n" + table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.date.today().isoformat()}-peer"
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "config": vars(args),
                "environment": env,
                "rounds": [[run.__dict__ for run in runs] for runs in rounds],
            },
            indent=2,
        )
    )
    stem.with_suffix(".md").write_text(table)
    print(f"wrote {stem.relative_to(REPO)}.json, .md")


def markdown_table(rounds: list[list[Run]], args: argparse.Namespace) -> str:
    by_consumer: dict[str, list[Run]] = {}
    for runs in rounds:
        for run in runs:
            by_consumer.setdefault(run.consumer, []).append(run)
    # Sustained (10-90 % stored) where a run stored that much, else whole run.
    medians = {
        name: statistics.median(run.steady_rate or run.rate for run in runs)
        for name, runs in by_consumer.items()
    }
    gateway = medians.get("gateway x1")
    lines = [
        f"{args.messages:,} QoS 1 readings, {args.publishers} mosquitto_pub "
        f"publishers, {args.rounds} rounds, medians; Node-RED "
        f"{PACKAGES['node-red']} with node-red-contrib-influxdb "
        f"{PACKAGES['node-red-contrib-influxdb']}.",
        "",
        "| consumer | readings/s stored, sustained | gateway x1 vs this "
        "| lost (all rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in by_consumer.items():
        rate = medians[name]
        ratio = f"{gateway / rate:.1f}x" if gateway and rate else "-"
        lines.append(
            f"| {name} | {rate:,.0f} | {ratio} | {sum(r.lost for r in runs)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
