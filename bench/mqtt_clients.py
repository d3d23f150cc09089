"""How fast can each MQTT client library drain a stream of ~100-byte messages?

gmqtt, paho-mqtt 2.x and aiomqtt against `mosquitto_sub` (C, the baseline,
measured in the same run), at QoS 0 and 1, through a private Mosquitto broker
(unlimited queues, default inflight window) or `--broker host:port`.

One run = one (consumer, QoS). The consumer subscribes to `bench/<uuid>/#` in
its own process; a retained probe on `bench/<uuid>/ready` tells it is
subscribed. `--publishers` mosquitto_pub processes (`-l -M 1000`) then publish
`--messages` ~100-byte JSON lines as fast as they can. Rate = (received - 1) /
(last - first data message), clocked in the consumer (`-F %U` for mosquitto_sub).
Python consumers only count: gmqtt with an `async def` on_message (optimistic
PUBACK, the default), gmqtt-ack (QoS 1 only: `optimistic_acknowledgement=False`,
PUBACK after the handler), paho with loop_forever(), aiomqtt with `async for`.

Reported per (consumer, QoS): median over `--rounds`, ratio to mosquitto_sub's
median, each run's rate, messages lost (sent - received; never hidden) and the
publishers' rate (a consumer as fast as that was publisher-bound). Everything
shares the CPUs. `--backlog` freezes the consumer (SIGSTOP) while all is
published, then resumes it: it drains a queued backlog, publishers idle.
`--mqtt 4` uses MQTT 3.1.1 for every client (default: 5, gmqtt's default).

    .venv/bin/python bench/mqtt_clients.py --messages 50000 --rounds 3

Prints a Markdown table; writes bench/results/<YYYY-MM-DD>-mqtt-clients.json.
"""

import argparse, asyncio, datetime, json, os, platform, select, signal, socket
import shutil, statistics, subprocess, sys, tempfile, threading, time, uuid
from importlib.metadata import version
from pathlib import Path

CONSUMERS = ["mosquitto_sub", "gmqtt", "gmqtt-ack", "paho", "aiomqtt"]


# --- consumer side: `mqtt_clients.py --consume LIB ...`, one process per run ---
class Counter:
    """Message 1 is the retained probe; messages 2..total are the timed data."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.t_first, self.t_last = total, 0, 0.0, time.time()

    def hit(self) -> bool:  # True once everything is in
        self.count += 1
        self.t_last = time.time()
        if self.count <= 2:
            if self.count == 1:
                print("ready", flush=True)  # we are subscribed
            self.t_first = self.t_last
        return self.count >= self.total

    def over(self, idle: float) -> bool:
        return self.count >= self.total or time.time() - self.t_last > idle


async def watch(c: Counter, idle: float) -> None:
    while not c.over(idle):
        await asyncio.sleep(0.1)


async def consume_gmqtt(a: argparse.Namespace, c: Counter) -> None:
    import gmqtt

    client = gmqtt.Client(
        f"bench-{uuid.uuid4().hex}", optimistic_acknowledgement=a.consume != "gmqtt-ack"
    )

    async def on_message(client, topic, payload, qos, properties):
        c.hit()
        return 0  # PubAckReasonCode.SUCCESS; without it no PUBACK in gmqtt-ack

    client.on_message = on_message
    await client.connect(a.host, a.port, version=a.mqtt)
    client.subscribe(a.topic, qos=a.qos)
    await watch(c, a.idle)
    await client.disconnect()


async def consume_aiomqtt(a: argparse.Namespace, c: Counter) -> None:
    import aiomqtt

    proto = aiomqtt.ProtocolVersion.V5 if a.mqtt == 5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(a.host, a.port, protocol=proto) as client:
        await client.subscribe(a.topic, qos=a.qos)

        async def drain() -> None:
            async for _ in client.messages:
                if c.hit():
                    return

        task = asyncio.create_task(drain())
        await watch(c, a.idle)
        task.cancel()


def consume_paho(a: argparse.Namespace, c: Counter) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5 if a.mqtt == 5 else mqtt.MQTTv311,
    )
    client.on_connect = lambda cl, ud, flags, rc, props: cl.subscribe(
        a.topic, qos=a.qos
    )
    client.on_message = lambda cl, ud, msg: c.hit() and cl.disconnect()

    def watchdog() -> None:  # ends loop_forever() if messages stop coming
        while not c.over(a.idle):
            time.sleep(0.1)
        client.disconnect()

    threading.Thread(target=watchdog, daemon=True).start()
    client.connect(a.host, a.port)
    client.loop_forever()


def consume(a: argparse.Namespace) -> None:
    c = Counter(a.count)
    if a.consume == "paho":
        consume_paho(a, c)
    else:
        asyncio.run(
            (consume_aiomqtt if a.consume == "aiomqtt" else consume_gmqtt)(a, c)
        )
    print(
        json.dumps(
            {"received": max(c.count - 1, 0), "t_first": c.t_first, "t_last": c.t_last}
        ),
        flush=True,
    )


# --- orchestrator ---
def start_broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:  # port 18931 unless taken, else any free one
        try:
            s.bind(("127.0.0.1", 18931))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf, log = tmp / "mosquitto.conf", tmp / "mosquitto.log"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)], stderr=log.open("w")
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not start: {log.read_text()}")


def run_once(a, name: str, qos: int, host: str, port: int, files: list[Path]) -> dict:
    base, total = f"bench/{uuid.uuid4().hex}", a.messages + 1
    conn = ["-h", host, "-p", str(port), "-V", "5" if a.mqtt == 5 else "311"]
    subprocess.run(
        ["mosquitto_pub", *conn, "-t", f"{base}/ready", "-r", "-q", "1", "-m", "{}"],
        check=True,
    )
    if name == "mosquitto_sub":
        out = tempfile.TemporaryFile("w+")
        cons = subprocess.Popen(
            [
                "mosquitto_sub",
                *conn,
                "-t",
                f"{base}/#",
                "-q",
                str(qos),
                "-C",
                str(total),
                "-F",
                "%U",
            ],
            stdout=out,
        )
        ready = lambda: os.fstat(out.fileno()).st_size > 0
    else:
        cons = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--consume",
                name,
                "--host",
                host,
                "--port",
                str(port),
                "--topic",
                f"{base}/#",
                "--qos",
                str(qos),
                "--count",
                str(total),
                "--mqtt",
                str(a.mqtt),
                "--idle",
                str(a.idle),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = lambda: (
            select.select([cons.stdout], [], [], 0.01)[0]
            and cons.stdout.readline() == "ready\n"
        )
    deadline = time.time() + 20
    while not ready():
        if cons.poll() is not None or time.time() > deadline:
            cons.kill()
            raise RuntimeError(f"{name} never got subscribed")
        time.sleep(0.01)
    if a.backlog:
        os.kill(cons.pid, signal.SIGSTOP)
    t0 = time.time()
    inputs = [f.open() for f in files]
    pubs = [
        subprocess.Popen(
            [
                "mosquitto_pub",
                *conn,
                "-t",
                f"{base}/p{i}",
                "-q",
                str(qos),
                "-M",
                "1000",
                "-l",
            ],
            stdin=f,
        )
        for i, f in enumerate(inputs)
    ]
    for p, f in zip(pubs, inputs):
        p.wait()
        f.close()
    pub_s = time.time() - t0
    if a.backlog:
        os.kill(cons.pid, signal.SIGCONT)
    try:
        cons.wait(timeout=a.idle + 60)
    except subprocess.TimeoutExpired:
        cons.kill()
        cons.wait()
    r = {"received": 0, "t_first": 0.0, "t_last": 0.0}
    if name == "mosquitto_sub":
        out.seek(0)
        ts = [float(x) for x in out.read().split()][1:]  # [0] is the probe
        if ts:
            r = {"received": len(ts), "t_first": ts[0], "t_last": ts[-1]}
    elif lines := cons.stdout.read().splitlines():
        r = json.loads(lines[-1])
    subprocess.run(
        ["mosquitto_pub", *conn, "-t", f"{base}/ready", "-r", "-n"], check=True
    )
    span = r["t_last"] - r["t_first"]
    return {
        "consumer": name,
        "qos": qos,
        "sent": a.messages,
        "received": r["received"],
        "lost": a.messages - r["received"],
        "seconds": round(span, 4),
        "rate": round((r["received"] - 1) / span) if span > 0 else 0,
        "publish_rate": round(a.messages / pub_s),
    }


def summarise(runs: list[dict], names: list[str]) -> list[dict]:
    summary = []
    for qos in (0, 1):
        base = statistics.median(
            [
                r["rate"]
                for r in runs
                if r["qos"] == qos and r["consumer"] == "mosquitto_sub"
            ]
            or [0]
        )
        for name in names:
            if rs := [r for r in runs if r["qos"] == qos and r["consumer"] == name]:
                med = statistics.median(r["rate"] for r in rs)
                summary.append(
                    {
                        "consumer": name,
                        "qos": qos,
                        "median_rate": round(med),
                        "ratio_to_mosquitto_sub": round(med / base, 3)
                        if base
                        else None,
                        "rates": [r["rate"] for r in rs],
                        "lost": [r["lost"] for r in rs],
                        "median_publish_rate": round(
                            statistics.median(r["publish_rate"] for r in rs)
                        ),
                    }
                )
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--broker", help="host:port of an existing broker (default: start one)"
    )
    p.add_argument("--consumers", default=",".join(CONSUMERS))
    p.add_argument("--publishers", type=int, default=2)
    p.add_argument("--mqtt", type=int, choices=[4, 5], default=5, help="4 = MQTT 3.1.1")
    p.add_argument(
        "--idle", type=float, default=10.0, help="consumer gives up after this"
    )
    p.add_argument(
        "--backlog", action="store_true", help="consumer drains a queued backlog"
    )
    p.add_argument("--consume", choices=CONSUMERS[1:], help=argparse.SUPPRESS)
    for opt, typ in (
        ("host", str),
        ("port", int),
        ("topic", str),
        ("qos", int),
        ("count", int),
    ):
        p.add_argument(f"--{opt}", type=typ, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.consume:
        return consume(a)
    names, load_before = [n for n in a.consumers.split(",") if n], os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="mqtt-bench-"))
    files = [tmp / f"pub{i}.txt" for i in range(a.publishers)]
    lines = [
        json.dumps(
            {
                "device": f"sensor-{i % 500:04d}",
                "seq": i,
                "ts": 1733246000.123 + i,
                "temp": 21.53,
                "hum": 45.2,
                "bat": 3.71,
                "rssi": -67,
            },
            separators=(",", ":"),
        )
        + "\n"
        for i in range(a.messages)
    ]  # ~100 B
    for i, f in enumerate(files):
        f.write_text("".join(lines[i :: a.publishers]))
    broker, runs = None, []
    try:
        if a.broker:
            host, port = a.broker.rsplit(":", 1)[0], int(a.broker.rsplit(":", 1)[1])
        else:
            host, (broker, port) = "127.0.0.1", start_broker(tmp)
        for rnd in range(a.rounds):
            for qos in (0, 1):
                for name in (
                    names[rnd % len(names) :] + names[: rnd % len(names)]
                ):  # rotated
                    if name == "gmqtt-ack" and qos == 0:
                        continue  # no acks at QoS 0: same code path as gmqtt
                    runs.append(
                        {"round": rnd + 1, **run_once(a, name, qos, host, port, files)}
                    )
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        if broker:
            broker.terminate()
            broker.wait()
        shutil.rmtree(tmp)
    summary, mode = summarise(runs, names), "backlog" if a.backlog else "live"
    print(
        f"\n{a.messages} messages x {a.rounds} rounds, MQTT {'5' if a.mqtt == 5 else '3.1.1'}"
        f", {a.publishers} publisher(s), {mode}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| consumer | QoS | median msg/s | vs mosquitto_sub | rates (msg/s) | lost | publish msg/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in summary:
        ratio = (
            f"{s['ratio_to_mosquitto_sub']:.0%}"
            if s["ratio_to_mosquitto_sub"]
            else "n/a"
        )
        print(
            f"| {s['consumer']} | {s['qos']} | {s['median_rate']:,} | {ratio} | "
            f"{', '.join(f'{x:,}' for x in s['rates'])} | "
            f"{', '.join(map(str, s['lost']))} | {s['median_publish_rate']:,} |"
        )
    mosq = subprocess.run(
        ["mosquitto_sub", "--help"], capture_output=True, text=True
    ).stdout
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mosquitto": mosq.splitlines()[1:2],
        "loadavg_before_after": [
            load_before,
            os.getloadavg(),
        ],  # others using the CPUs?
        **{pkg: version(pkg) for pkg in ("gmqtt", "paho-mqtt", "aiomqtt")},
    }
    suffix = ("-backlog" if a.backlog else "") + ("-mqtt311" if a.mqtt == 4 else "")
    out = (
        Path(__file__).parent
        / "results"
        / f"{datetime.date.today()}-mqtt-clients{suffix}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "config": {k: v for k, v in vars(a).items() if v is not None},
                "mode": mode,
                "environment": env,
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
