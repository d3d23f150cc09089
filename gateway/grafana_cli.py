"""`decor grafana provision`: Grafana's datasource, folders, dashboards and alert
rules from the registry, pushed to a Grafana or written as provisioning files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

import typer
from grafana_client.api import GrafanaApi
from rich.table import Table

from gateway.grafana.bundle import build_bundle, influx_source_of
from gateway.grafana.city import read_city
from gateway.grafana.files import DEFAULT_DASHBOARDS_PATH, write_files
from gateway.grafana.naming import Generation
from gateway.grafana.provision import GrafanaUnreachable, ProvisionReport, provision
from gateway.registry.terminal import console, fail, open_registry, output

__all__ = ["register_commands"]

grafana_app = typer.Typer(
    help="Provision Grafana from the registry: datasource, dashboards, alert rules.",
    no_args_is_help=True,
)
GRAFANA_TIMEOUT_S = 10.0
_ACTION_STYLE = {
    "create": "green",
    "update": "yellow",
    "overwritten": "bold yellow",
    "kept": "bold red",
    "failed": "bold red",
    "unchanged": "dim",
}


def register_commands(app: typer.Typer) -> None:
    """Add `decor grafana` to the `decor` command."""
    app.add_typer(grafana_app, name="grafana")


@grafana_app.command("provision")
def provision_command(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Gateway configuration file (TOML).")
    ] = Path("config/gateway.toml"),
    url: Annotated[
        str | None, typer.Option(help="Grafana URL; default: \\[grafana] url.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Service-account token; default: \\[grafana] token "
            "(or DECOR_GRAFANA__TOKEN).",
        ),
    ] = None,
    locale: Annotated[
        str | None, typer.Option(help="id or en; default: \\[grafana] locale.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read Grafana, print what would change.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite dashboards edited by hand in Grafana."),
    ] = False,
    to_files: Annotated[
        Path | None,
        typer.Option(
            "--to-files",
            help="Write file provisioning (YAML and dashboard JSON) here instead "
            "of pushing to Grafana.",
        ),
    ] = None,
    dashboards_path: Annotated[
        str, typer.Option(help="With --to-files: where Grafana sees DIR/dashboards.")
    ] = DEFAULT_DASHBOARDS_PATH,
) -> None:
    """Generate Grafana's objects from the registry and provision them.

    Exit codes: 0 done, 1 some objects were kept or failed (listed), 2 bad
    configuration or Grafana unreachable or refusing the token.
    """
    with open_registry(config) as (registry, settings):
        chosen = locale or settings.grafana.locale
        if chosen not in ("id", "en"):
            fail(f"--locale must be id or en, got {chosen!r}", 2)
        generation = Generation(
            locale=_locale(chosen),
            gateway_api_url=settings.grafana.gateway_api_url,
            online_window_s=settings.grafana.online_window_s,
        )
        city = read_city(registry, registry.profiles or {})
        bundle = build_bundle(city, generation, influx_source_of(settings))

    if to_files is not None:
        written = write_files(bundle, to_files, dashboards_path)
        output.print(
            f"Wrote {len(written)} files to {to_files}: {len(bundle.dashboards)} "
            f"dashboards, {len(bundle.datasources)} datasources, "
            f"{sum(len(g.rules) for g in bundle.rule_groups)} alert rules",
            soft_wrap=True,
        )
        return

    grafana_url = url or settings.grafana.url
    credential = token or settings.grafana.token
    if not credential:
        fail(
            "No Grafana token: give --token, [grafana] token or "
            "DECOR_GRAFANA__TOKEN (a service-account token, glsa_...)",
            2,
        )
    logging.getLogger("grafana_client").setLevel(logging.WARNING)
    api = GrafanaApi.from_url(
        grafana_url, credential=credential, timeout=GRAFANA_TIMEOUT_S
    )
    try:
        report = provision(api, bundle, dry_run=dry_run, force=force)
    except GrafanaUnreachable as exc:
        fail(f"{grafana_url}: {exc}", 2)
    finally:
        api.client.s.close()
    _print_report(report, dry_run)
    if report.problems:
        raise typer.Exit(code=1)


def _locale(value: str) -> Literal["id", "en"]:
    return "en" if value == "en" else "id"


def _print_report(report: ProvisionReport, dry_run: bool) -> None:
    table = Table(title="Grafana (dry run: nothing written)" if dry_run else "Grafana")
    for column in ("kind", "uid", "title", "action", "detail"):
        table.add_column(column, overflow="fold")
    for change in report.changes:
        style = _ACTION_STYLE.get(change.action, "")
        table.add_row(
            change.kind,
            change.uid,
            change.title,
            f"[{style}]{change.action}[/]",
            change.detail,
        )
    output.print(table)
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{len(report.changed)} {verb}, "
        f"{sum(c.action == 'unchanged' for c in report.changes)} unchanged, "
        f"{len(report.problems)} kept or failed",
        soft_wrap=True,
    )
