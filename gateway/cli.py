"""The `decor` command: run the gateway, simulate devices, check a configuration.

`decor deadletter list|show|replay` inspects what the gateway refused and, once
a profile or the configuration is fixed, stores it after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from gateway.app import Gateway, build_quality_checker, build_routes
from gateway.cctv_cli import cctv_app
from gateway.config import GatewayConfig, load_config
from gateway.config_reference import config_app
from gateway.deadletters import (
    DeadLetter,
    ReplayLog,
    ReplayOutcome,
    find_entry,
    prepare_replay,
    read_entries,
    select_entries,
    write_replay,
)
from gateway.decoding import Route
from gateway.errors import ConfigError, SinkError
from gateway.logs import LogFormat, secrets_in, setup_logging
from gateway.registry import RegistryError
from gateway.grafana_cli import register_commands as register_grafana_commands
from gateway.registry.running import Admit, replay_admission
from gateway.operations_cli import register_operations_commands
from gateway.registry_cli import register_commands
from gateway.sinks import make_sink
from gateway.stats import GatewayStats

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 5.0
MAX_LISTED_DETAIL_CHARS = 60
PROGRESS_MIN_ENTRIES = 100
HEX_BYTES_PER_LINE = 16
WIDE_TABLE_COLUMNS = 120
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_AGE_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

app = typer.Typer(
    help="DeCOR Gateway: city sensor telemetry from MQTT into InfluxDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, highlight=False)
# What the operator asked to see (tables, entries) goes to stdout.
output = Console(highlight=False)
deadletter_app = typer.Typer(
    help="Inspect what the gateway refused, and replay it once the cause is fixed.",
    no_args_is_help=True,
)
app.add_typer(deadletter_app, name="deadletter")
# decor config reference: the documentation of every key, from the model.
app.add_typer(config_app, name="config")
# decor devices|cameras|sites|agencies|tokens|audit|api: the registry.
register_commands(app)
app.add_typer(cctv_app, name="cctv")
# decor grafana provision: dashboards and alert rules from the registry.
register_grafana_commands(app)
register_operations_commands(app)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="Gateway configuration file (TOML).", show_default=True
    ),
]


@app.command()
def run(
    config: ConfigOption = Path("config/gateway.toml"),
    duration: Annotated[
        float | None,
        typer.Option(
            help="Stop by itself after this many seconds (default: run until "
            "SIGINT/SIGTERM)."
        ),
    ] = None,
    summary: Annotated[
        bool, typer.Option(help="Print a one-line summary every few seconds.")
    ] = True,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            help="Log lines as text for people or as JSON objects, one a line "
            "(default: log_format in the configuration, else text)."
        ),
    ] = None,
) -> None:
    """Run the gateway in the foreground until SIGINT or SIGTERM."""
    settings = _load_or_exit(config)
    setup_logging(
        settings.log_level,
        log_format or settings.log_format,
        secrets=secrets_in(settings),
    )
    try:
        gateway = Gateway(settings, source=str(config))
    except ConfigError as exc:
        _fail(str(exc))
    try:
        asyncio.run(_run_gateway(gateway, duration, summary))
    except ConfigError as exc:
        # Raised at start-up only: the registry API's address is taken.
        _fail(str(exc))
    except RegistryError as exc:
        # Raised at start-up only: the registry's database cannot be read.
        console.print(
            f"[bold red]Registry error:[/] {escape(str(exc))}", soft_wrap=True
        )
        raise typer.Exit(code=1) from None


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench(
    context: typer.Context,
    part: Annotated[
        str,
        typer.Argument(
            help="all (the sizes of `make bench`), or one of bench/*.py: "
            "ingest, peer, decode, encode, quality, mqtt_clients, cctv"
        ),
    ] = "all",
) -> None:
    """Run a benchmark of bench/ (a source checkout): extra options go to it."""
    script = Path("bench") / f"{part}.py"
    if not script.is_file():
        _fail(
            f"{script} not found: run `decor bench` from the repository root "
            "(the benchmarks are not installed with the package)"
        )
    done = subprocess.run([sys.executable, str(script), *context.args], check=False)
    raise typer.Exit(code=done.returncode)


@app.command()
def check(config: ConfigOption = Path("config/gateway.toml")) -> None:
    """Validate a configuration file (and DECOR_* overrides) without connecting."""
    settings = _load_or_exit(config)
    try:
        Gateway(settings, source=str(config))
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"{escape(str(config))}: configuration is valid", soft_wrap=True)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 18830,
    username: Annotated[
        str | None,
        typer.Option(envvar="SIMULATOR_MQTT_USERNAME", help="MQTT user name."),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="SIMULATOR_MQTT_PASSWORD",
            help="MQTT password (better given by the environment variable).",
            show_default=False,
        ),
    ] = None,
    devices: Annotated[
        int, typer.Option(min=1, help="Simulated devices of each type.")
    ] = 4,
    interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between two readings of a device.")
    ] = 5.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds.")
    ] = None,
    topic_prefix: Annotated[str, typer.Option(help="First topic level.")] = "city",
    seed: Annotated[int, typer.Option(help="Random seed, for repeatable runs.")] = 1,
    rain: Annotated[
        bool, typer.Option(help="Simulate a storm raising the rivers.")
    ] = True,
    faulty_every: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Add the river gauge rg-faulty-01, which sends a bad payload "
            "(cut off, text, NaN, clock unset, garbage, impossible) about this "
            "often, in seconds.",
        ),
    ] = None,
) -> None:
    """Publish readings from simulated river, rain and air-quality devices."""
    from devices.simulator import (
        FAULTY_DEVICE_ID,
        SimulationOptions,
        list_devices,
        run_simulation,
    )

    setup_logging("info")
    options = SimulationOptions(
        host=host,
        port=port,
        username=username,
        password=password,
        devices_per_type=devices,
        interval_s=interval,
        duration_s=duration,
        topic_prefix=topic_prefix,
        seed=seed,
        rain_event=rain,
        faulty_every_s=faulty_every,
    )
    fleet = list_devices(options)
    console.print(
        f"Simulating {len(fleet)} devices on {host}:{port}, one reading each every "
        f"{interval:g} s"
    )
    if faulty_every is not None:
        console.print(
            f"{FAULTY_DEVICE_ID} sends a bad payload about every "
            f"{options.faulty_every_reports() * interval:g} s"
        )
    published = 0

    def count(topic: str, payload: bytes) -> None:
        nonlocal published
        published += 1

    asyncio.run(_until_signal(run_simulation(options, on_publish=count)))
    console.print(f"Published {published:,} readings")


@deadletter_app.command("list")
def deadletter_list(
    config: ConfigOption = Path("config/gateway.toml"),
    reason: Annotated[
        str | None, typer.Option(help="Only entries with this reason code.")
    ] = None,
    topic: Annotated[
        str | None,
        typer.Option(help="Only topics matching this MQTT topic filter (+, #)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only entries since this time: ISO 8601 (UTC unless it has an "
            "offset) or an age such as 30m, 2h, 1d."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show the newest N entries (0: all).")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the entries as a JSON array.")
    ] = False,
) -> None:
    """List the dead letters kept, oldest first, with a count by reason."""
    settings = _load_or_exit(config)
    since_ns = _parse_since(since) if since else None
    entries, replayed = _read_store(settings)
    chosen = select_entries(
        entries, reason=reason, topic_filter=topic, since_ns=since_ns
    )
    shown = chosen[-limit:] if limit else chosen
    if as_json:
        states = [entry.raw | {"state": _state(entry, replayed)} for entry in shown]
        sys.stdout.write(orjson.dumps(states, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return
    if not chosen:
        output.print(f"No dead letters in {escape(str(settings.dead_letters.path))}")
        return
    output.print(_entry_table(shown, replayed))
    output.print(_summary(chosen, shown, replayed), soft_wrap=True)


@deadletter_app.command("show")
def deadletter_show(
    entry_id: Annotated[
        str, typer.Argument(metavar="ID", help="The entry's id, or its start.")
    ],
    config: ConfigOption = Path("config/gateway.toml"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the entry as JSON.")
    ] = False,
) -> None:
    """Show one dead letter in full, its payload as text or as a hex dump."""
    settings = _load_or_exit(config)
    entries, replayed = _read_store(settings)
    try:
        entry = find_entry(entries, entry_id)
    except LookupError as exc:
        console.print(escape(str(exc)), soft_wrap=True)
        raise typer.Exit(code=1) from None
    if as_json:
        document = entry.raw | {"state": _state(entry, replayed)}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return
    output.print(_entry_facts(entry, replayed))
    _print_payload(entry)


@deadletter_app.command("replay")
def deadletter_replay(
    config: ConfigOption = Path("config/gateway.toml"),
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", metavar="ID", help="Replay this entry (repeat for more)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Replay the entries not yet replayed with this reason."),
    ] = None,
    all_entries: Annotated[
        bool, typer.Option("--all", help="Replay every entry not yet replayed.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Decode and report, but write nothing."),
    ] = False,
) -> None:
    """Decode dead letters again with the current configuration and store them.

    Each message is routed and decoded as the gateway would now; its points
    keep their original times. Stored entries are marked as replayed and not
    replayed again. Exits 1 if some entries still fail.
    """
    settings = _load_or_exit(config)
    try:
        routes = build_routes(settings, str(config))
    except ConfigError as exc:
        _fail(str(exc))
    if sum([bool(ids), reason is not None, all_entries]) != 1:
        console.print(
            "Choose what to replay: --id ID (repeatable), --reason R or --all"
        )
        raise typer.Exit(code=2)
    setup_logging("warning", secrets=secrets_in(settings))
    entries, replayed = _read_store(settings)
    selected, code = _select_for_replay(entries, replayed, ids, reason)
    log = ReplayLog(settings.dead_letters.path)
    try:
        with (
            log.locked({entry.id for entry in entries}),
            replay_admission(settings, str(config)) as admit,
        ):
            code |= asyncio.run(
                _replay(settings, routes, selected, log, dry_run, admit)
            )
    except RegistryError as exc:
        console.print(f"Registry error: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    except BlockingIOError:
        console.print(f"Another replay holds {escape(str(log.path))}; try again later")
        raise typer.Exit(code=1) from None
    raise typer.Exit(code=code)


def main() -> None:
    """Entry point of the `decor` console script."""
    app()


async def _run_gateway(
    gateway: Gateway, duration_s: float | None, summary: bool
) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop, second_exits=True)
    extra: list[asyncio.Task[None]] = []
    if duration_s is not None:
        extra.append(asyncio.create_task(_set_after(stop, duration_s), name="duration"))
    if summary:
        extra.append(
            asyncio.create_task(_print_summaries(gateway.stats), name="console.summary")
        )
    try:
        await gateway.run(stop)
    finally:
        for task in extra:
            task.cancel()
        _print_summary_line(gateway.stats, None)


async def _until_signal(work: Coroutine[Any, Any, int]) -> int | None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


def _stop_on_signals(stop: asyncio.Event, *, second_exits: bool = False) -> None:
    """Set `stop` at the first SIGINT or SIGTERM; with `second_exits`, leave at
    once at the second.

    Leaving at once loses nothing acknowledged: the gateway acknowledges a
    message only once its points are stored, spooled (on disk) or kept as dead
    letters, and the broker sends the others again at the next start.
    """
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set() or not second_exits:
            stop.set()
            return
        logger.warning(
            "%s again: exiting now; messages not yet acknowledged stay with the "
            "broker",
            signum.name,
        )
        logging.shutdown()
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


async def _set_after(stop: asyncio.Event, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    logger.info("Ran for %.0f s as asked; stopping", delay_s)
    stop.set()


async def _print_summaries(stats: GatewayStats) -> None:
    previous = (time.monotonic(), 0)
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL_S)
        previous = _print_summary_line(stats, previous)


def _print_summary_line(
    stats: GatewayStats, previous: tuple[float, int] | None
) -> tuple[float, int]:
    now = time.monotonic()
    rate = ""
    if previous is not None:
        elapsed = max(now - previous[0], 1e-9)
        rate = f"{(stats.messages_received - previous[1]) / elapsed:8.1f} msg/s  "
    rejects = sum(stats.messages_rejected.values())
    reasons = ", ".join(
        f"{reason} {count}" for reason, count in stats.messages_rejected.most_common(3)
    )
    line = (
        f"{rate}received {stats.messages_received:,}  "
        f"stored {stats.points_written:,} points  "
        f"buffered {stats.points_buffered:,}  rejected {rejects:,}"
    )
    if reasons:
        line += f" ({reasons})"
    if stats.spool_points:
        line += (
            f"  spooled {stats.spool_points:,} "
            f"(oldest {stats.spool_oldest_age_s:,.0f} s)"
        )
    if stats.fields_rejected:
        line += f"  values left out {sum(stats.fields_rejected.values()):,}"
    refused = sum(stats.points_rejected.values())
    if refused:
        line += f"  refused by InfluxDB {refused:,}"
    flagged = sum(stats.readings_flagged.values())
    if flagged:
        line += f"  flagged {flagged:,}"
    console.print(line, soft_wrap=True)
    return now, stats.messages_received


def _read_store(settings: GatewayConfig) -> tuple[list[DeadLetter], dict[str, Any]]:
    path = settings.dead_letters.path
    try:
        entries, damaged = read_entries(path)
    except OSError as exc:
        console.print(f"Cannot read {escape(str(path))}: {escape(str(exc))}")
        raise typer.Exit(code=1) from None
    if damaged:
        console.print(f"Skipped {damaged} unreadable line(s) in {escape(str(path))}")
    return entries, ReplayLog(path).load()


def _parse_since(text: str) -> int:
    age = _AGE.fullmatch(text.strip())
    if age:
        seconds = float(age.group(1)) * _AGE_UNIT_S[age.group(2)]
        return time.time_ns() - int(seconds * 1e9)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 time or an age like 30m, got {text!r}",
            param_hint="--since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e6) * 1000


def _state(entry: DeadLetter, replayed: dict[str, Any]) -> str:
    return "replayed" if entry.id in replayed else "pending"


def _utc(time_ns: int, time_format: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(time_ns / 1e9, UTC).strftime(time_format)


def _entry_table(entries: Sequence[DeadLetter], replayed: dict[str, Any]) -> Table:
    # Ids are what show and replay take: they never shrink; the rest folds. An
    # 80-column terminal gets a shorter date and no decoder (show has it).
    wide = output.width >= WIDE_TABLE_COLUMNS
    table = Table(
        box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False
    )
    table.add_column("ID", no_wrap=True, min_width=14)
    table.add_column("Received (UTC)", no_wrap=True)
    table.add_column("Reason", overflow="fold", min_width=8)
    table.add_column("Topic", overflow="fold", min_width=8, ratio=2)
    if wide:
        table.add_column("Decoder", overflow="fold")
    table.add_column("Detail", overflow="fold", min_width=8, ratio=3)
    table.add_column("State", no_wrap=True, min_width=8)
    for entry in entries:
        detail = entry.detail
        if len(detail) > MAX_LISTED_DETAIL_CHARS:
            detail = detail[: MAX_LISTED_DETAIL_CHARS - 1] + "…"
        reason = entry.reason
        if entry.kind != "message":
            reason += f" ({entry.kind})"
        row: list[str | Text] = [
            entry.id,
            _utc(entry.time_ns, "%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M:%S"),
            Text(reason),
            Text(entry.topic or "-"),
        ]
        if wide:
            row.append(entry.decoder or "-")
        table.add_row(*row, Text(detail), _state(entry, replayed))
    return table


def _summary(
    chosen: Sequence[DeadLetter],
    shown: Sequence[DeadLetter],
    replayed: dict[str, Any],
) -> Text:
    counts = Counter(entry.reason for entry in chosen)
    done = sum(1 for entry in chosen if entry.id in replayed)
    text = f"{len(chosen)} dead letters"
    if len(shown) < len(chosen):
        text += f" ({len(shown)} newest shown; --limit 0 shows all)"
    text += f", {done} replayed. By reason: " + ", ".join(
        f"{reason} {count}" for reason, count in counts.most_common()
    )
    return Text(text)


def _entry_facts(entry: DeadLetter, replayed: dict[str, Any]) -> Table:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    done = replayed.get(entry.id)
    rows = [
        ("ID", entry.id),
        ("Kept at", entry.time),
        (
            "State",
            f"replayed at {done.get('at', '?')} ({done.get('points', 0)} points)"
            if done
            else "pending (not replayed)",
        ),
        ("Kind", entry.kind),
        ("Reason", entry.reason),
        ("Detail", entry.detail),
    ]
    if entry.kind != "point":
        rows += [
            ("Topic", entry.topic),
            ("QoS / retain", f"{entry.qos} / {'yes' if entry.retain else 'no'}"),
            ("Received", entry.raw.get("received") or _utc(entry.time_ns)),
            ("Decoder", entry.decoder or "-"),
        ]
    rows += [(f"Left out: {f.field}", f"{f.reason}: {f.detail}") for f in entry.fields]
    size = len(entry.payload or b"")
    if entry.payload_truncated:
        size_text = f"{entry.raw.get('payload_bytes', '?')} bytes, first {size} kept"
    else:
        size_text = f"{size} bytes"
    rows.append(("Line protocol" if entry.kind == "point" else "Payload", size_text))
    for name, value in rows:
        facts.add_row(name, Text(str(value)))
    return facts


def _print_payload(entry: DeadLetter) -> None:
    payload = entry.payload or b""
    text = _printable_text(payload)
    output.print()
    if text is not None:
        output.print(Text(text), soft_wrap=True)
    else:
        output.print(Text(_hex_dump(payload)), soft_wrap=True)


def _printable_text(payload: bytes) -> str | None:
    """Return the payload as text if it is UTF-8 without control characters."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Escape sequences in a payload must not drive the operator's terminal.
    if any(c not in "\n\t" and not c.isprintable() for c in text):
        return None
    return text


def _hex_dump(payload: bytes) -> str:
    lines = []
    for offset in range(0, len(payload), HEX_BYTES_PER_LINE):
        chunk = payload[offset : offset + HEX_BYTES_PER_LINE]
        hex_part = " ".join(f"{byte:02x}" for byte in chunk)
        shown = "".join(chr(b) if chr(b) in _PRINTABLE_ASCII else "." for b in chunk)
        lines.append(f"{offset:08x}  {hex_part:<{HEX_BYTES_PER_LINE * 3}} |{shown}|")
    return "\n".join(lines)


_PRINTABLE_ASCII = frozenset(
    string.ascii_letters + string.digits + string.punctuation + " "
)


def _select_for_replay(
    entries: list[DeadLetter],
    replayed: dict[str, Any],
    ids: list[str] | None,
    reason: str | None,
) -> tuple[list[DeadLetter], int]:
    """Pick the entries to replay; return them and 1 if an id was not found."""
    if not ids:
        pending = [entry for entry in entries if entry.id not in replayed]
        return select_entries(pending, reason=reason), 0
    selected: list[DeadLetter] = []
    code = 0
    for wanted in ids:
        try:
            entry = find_entry(entries, wanted)
        except LookupError as exc:
            output.print(Text(str(exc)))
            code = 1
            continue
        if entry.id in replayed:
            at = replayed[entry.id].get("at", "?")
            output.print(Text(f"{entry.id}  already replayed at {at}; skipped"))
        elif all(entry.id != chosen.id for chosen in selected):
            selected.append(entry)
    return selected, code


async def _replay(
    settings: GatewayConfig,
    routes: list[Route],
    selected: list[DeadLetter],
    log: ReplayLog,
    dry_run: bool,
    admit: Admit | None = None,
) -> int:
    if not selected:
        output.print("Nothing to replay")
        return 0
    quality = build_quality_checker(settings)
    outcomes = [prepare_replay(entry, routes, quality, admit) for entry in selected]
    failed = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in failed:
        _print_outcome(outcome, dry_run)
    if dry_run:
        for outcome in outcomes:
            if outcome.ok:
                _print_outcome(outcome, dry_run)
        _print_replay_summary(outcomes, dry_run)
        return 1 if failed else 0
    written = (
        await _write_outcomes(settings, outcomes, log)
        if len(failed) < len(outcomes)
        else []
    )
    if written is None:
        return 1
    _print_replay_summary(failed + written, dry_run)
    return 0 if all(outcome.ok for outcome in written) and not failed else 1


async def _write_outcomes(
    settings: GatewayConfig, outcomes: list[ReplayOutcome], log: ReplayLog
) -> list[ReplayOutcome] | None:
    """Store what can be stored, marking and printing each batch once written.

    Returns the written outcomes, or None if InfluxDB could not be reached.
    """
    written: list[ReplayOutcome] = []
    writable = sum(1 for outcome in outcomes if outcome.ok)
    sink = make_sink(settings.influx)
    small = len(outcomes) < PROGRESS_MIN_ENTRIES
    with Progress(console=console, transient=True, disable=small) as progress:
        task = progress.add_task("Replaying", total=writable)

        def done(batch: list[ReplayOutcome]) -> None:
            log.mark(outcome for outcome in batch if outcome.ok)
            for outcome in batch:
                _print_outcome(outcome, dry_run=False)
            written.extend(batch)
            progress.advance(task, len(batch))

        try:
            await sink.open()
            await write_replay(outcomes, sink, settings.influx.batch_size, done)
        except SinkError as exc:
            console.print(
                f"Cannot write: {escape(str(exc))}; "
                f"{writable - len(written)} entries not replayed",
                soft_wrap=True,
            )
            return None
        finally:
            await sink.close()
    return written


def _print_outcome(outcome: ReplayOutcome, dry_run: bool) -> None:
    entry = outcome.entry
    if outcome.ok:
        count = len(outcome.lines)
        verb = "would store" if dry_run else "stored"
        text = f"{entry.id}  {verb} {count} point{'' if count == 1 else 's'}"
    else:
        text = f"{entry.id}  still rejected ({outcome.reason}: {outcome.detail})"
    if outcome.note:
        text += f"; {outcome.note}"
    output.print(Text(text), soft_wrap=True)


def _print_replay_summary(outcomes: Sequence[ReplayOutcome], dry_run: bool) -> None:
    stored = [outcome for outcome in outcomes if outcome.ok]
    points = sum(len(outcome.lines) for outcome in stored)
    rejected = Counter(outcome.reason for outcome in outcomes if not outcome.ok)
    text = (
        f"{len(stored)} of {len(outcomes)} entries "
        f"{'would be stored' if dry_run else 'stored'} "
        f"({points} point{'' if points == 1 else 's'})"
    )
    if rejected:
        text += "; still rejected: " + ", ".join(
            f"{reason} {count}" for reason, count in rejected.most_common()
        )
    output.print(Text(text), soft_wrap=True)


def _load_or_exit(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str) -> typer.Exit:
    # The message quotes operator input, which may hold rich markup like "[/]".
    console.print(
        f"[bold red]Configuration error:[/] {escape(message)}", soft_wrap=True
    )
    raise typer.Exit(code=2)

