"""`provisioner`: serve, worker, db upgrade, demo, policy check, audit.

Every command calls the same service functions as the API, in its own session scope,
through the one `run_async` helper.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from provisioner import heap
from provisioner.logs import configure_logging
from provisioner.meetings.commands import meetings_app
from provisioner.secrets.commands import secrets_app
from provisioner.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

app = typer.Typer(
    help="Provision secure meetings and deliver their links privately.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
policy_app = typer.Typer(help="Meeting policy files.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(secrets_app, name="secrets")
app.add_typer(meetings_app, name="meetings")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _settings(*, background_logging: bool = False) -> Settings:
    """The settings, or exit 2 naming the bad key; logging configured from them.

    `background_logging` for the long-running processes: see provisioner/logs.py.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    configure_logging(
        level=settings.log_level, fmt=settings.log_format, background=background_logging
    )
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    upgrade: Annotated[bool, typer.Option(help="Run migrations before serving.")] = True,
) -> None:
    """Run the API (and, unless worker.embedded=false, the delivery worker in-process)."""
    import uvicorn

    from provisioner.app import build_state, close_state, create_app
    from provisioner.migrate import upgrade as upgrade_db

    settings = _settings(background_logging=True)
    try:
        # Build (and close) everything once before serving, so a bad configuration stops
        # here with the key's name instead of inside uvicorn's lifespan.
        run_async(close_state(build_state(settings)))
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if upgrade:
        upgrade_db(settings.database.url)
    # access_log=False: ours is `http.request.completed` (middleware.py), without the query.
    uvicorn.run(
        create_app(settings, settle_heap=True),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        access_log=False,
    )


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's delivery metrics on this port (no auth)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run a delivery worker; start as many as you like, on as many hosts as you like.

    With `[watcher] enabled = true` it also runs the attendance watcher.
    """
    from provisioner.app import build_state, close_state

    settings = _settings(background_logging=True)

    async def main() -> None:
        try:
            state = build_state(settings)
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from provisioner.observability.metrics import Metrics

            metrics = state.worker.metrics = Metrics()
            start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        watcher = None
        if settings.watcher.enabled:
            from provisioner.meetings.watcher import AttendanceWatcher

            watcher = AttendanceWatcher(
                state.db,
                state.providers,
                settings=settings.watcher,
                public_url=settings.api.public_url,
                on_queued=state.worker.wake,
            )
        from provisioner.meetings.reconcile import reconcile_periodically

        loops = [
            state.worker.run(stop),
            # Settles what crashed requests left behind, and retries failed orphan checks.
            reconcile_periodically(
                state.db, settings=settings.idempotency, providers=state.providers, stop=stop
            ),
        ]
        if watcher is not None:
            loops.append(watcher.run(stop))
        heap.settle()  # started: what is built now lives as long as the process
        try:
            await asyncio.gather(*loops)
        finally:
            await close_state(state)

    run_async(main())


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION."""
    from provisioner.migrate import upgrade

    settings = _settings()
    upgrade(settings.database.url, revision)
    typer.echo(f"database at {revision}")


@policy_app.command("check")
def policy_check(
    file: Annotated[
        Path,
        typer.Argument(help="Policy YAML to validate.", exists=True, dir_okay=False, readable=True),
    ],
) -> None:
    """Validate a policy file and print the effective policy for each group."""
    from provisioner.policy.document import load_policy
    from provisioner.policy.errors import InvalidPolicy
    from provisioner.policy.render import render_policy_report

    try:
        document = load_policy(file)
    except InvalidPolicy as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from None
    typer.echo(render_policy_report(document))


@audit_app.command("show")
def audit_show(
    meeting: Annotated[str | None, typer.Option(help="Only events about this id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
) -> None:
    """Print audit events, oldest first."""
    from provisioner.audit.render import render_events
    from provisioner.audit.service import list_events
    from provisioner.db import Database, create_engine

    settings = _settings()

    async def main() -> str:
        db = Database(create_engine(settings.database))
        try:
            async with db.session() as session:
                return render_events(await list_events(session, target_id=meeting, limit=limit))
        finally:
            await db.dispose()

    typer.echo(run_async(main()))


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; exit 1 and name the first bad event if it was tampered with
    (exit 2 if the audit log cannot be read at all)."""
    from sqlalchemy.exc import SQLAlchemyError

    from provisioner.audit.service import verify_chain
    from provisioner.db import Database, create_engine

    settings = _settings()

    async def main() -> bool:
        db = Database(create_engine(settings.database))
        try:
            async with db.session() as session:
                report = await verify_chain(session)
        except (SQLAlchemyError, OSError) as exc:
            # Not a verdict: exit 2, so monitoring that treats 1 as "tampered" stays quiet.
            typer.echo(f"cannot read the audit log: {type(exc).__name__}", err=True)
            raise typer.Exit(2) from None
        finally:
            await db.dispose()
        if report.ok:
            typer.echo(f"audit chain intact: {report.events} events")
        else:
            typer.echo(f"audit chain BROKEN at event {report.broken_at}: {report.reason}", err=True)
        return report.ok

    if not run_async(main()):
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl: one JSON object per event, chain order.")
    ] = "jsonl",
    since: Annotated[
        int | None, typer.Option(help="Only events after this id (continue an earlier export).")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(help="File to write, or - for stdout (the default unless --syslog)."),
    ] = None,
    syslog: Annotated[
        str | None,
        typer.Option(help="Also send each event to HOST:PORT over UDP as RFC 5424 syslog."),
    ] = None,
) -> None:
    """Export the audit chain with every hash, so it can be re-verified anywhere."""
    import contextlib
    from collections.abc import Callable

    from provisioner.db import Database, create_engine
    from provisioner.observability.audit_export import (
        SyslogUdp,
        export,
        jsonl_line,
        parse_hostport,
    )

    if fmt != "jsonl":
        typer.echo(f"--format {fmt}: only jsonl is supported", err=True)
        raise typer.Exit(2)
    try:
        collector = parse_hostport(syslog) if syslog else None
    except ValueError as exc:
        typer.echo(f"--syslog {exc}", err=True)
        raise typer.Exit(2) from None
    settings = _settings()

    async def main() -> int:
        sinks: list[Callable[[dict[str, Any]], None]] = []
        with contextlib.ExitStack() as stack:
            if output == "-" or (output is None and collector is None):
                sinks.append(lambda record: typer.echo(jsonl_line(record)))
            elif output is not None:
                handle = stack.enter_context(Path(output).open("w", encoding="utf-8"))
                sinks.append(lambda record: print(jsonl_line(record), file=handle))
            if collector is not None:
                sender = SyslogUdp(*collector)
                stack.callback(sender.close)
                sinks.append(sender.send)
            db = Database(create_engine(settings.database))
            try:
                return await export(db, since=since, sinks=sinks)
            finally:
                await db.dispose()

    try:
        count = run_async(main())
    except OSError as exc:
        typer.echo(f"audit export failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported {count} audit events", err=True)


@app.command("dev-token")
def dev_token(
    email: Annotated[str, typer.Option(help="The caller's email (becomes the host).")],
    name: Annotated[str, typer.Option(help="The caller's display name.")] = "Dev User",
    group: Annotated[list[str] | None, typer.Option(help="A group claim; repeatable.")] = None,
    key_dir: Annotated[Path, typer.Option(help="Where the local signing key lives.")] = Path(
        "var/dev-issuer"
    ),
) -> None:
    """Development only: print a bearer token from a local issuer (and write its JWKS).

    Point `auth.jwks_file` at KEY_DIR/jwks.json and `auth.issuer` at the printed issuer.
    """
    from provisioner.auth.local_issuer import LocalIssuer

    settings = _settings()
    if settings.environment != "development":
        typer.echo("dev-token is refused outside environment=development", err=True)
        raise typer.Exit(2)
    issuer = LocalIssuer.persistent(key_dir)
    typer.echo(f"# issuer: {issuer.issuer}  jwks: {key_dir / 'jwks.json'}", err=True)
    typer.echo(issuer.token(subject=email, email=email, name=name, groups=group or []))


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its files.")
    ] = Path("var/demo"),
) -> None:
    """Run the main flow end to end on SQLite and the file mail transport (no servers)."""
    from provisioner.demo import run_demo

    configure_logging(level="WARNING")
    sys.exit(run_async(run_demo(directory, out=typer.echo)))


@app.command("scan")
def scan_meetings(
    provider: Annotated[
        str | None, typer.Option(help="Scan only this configured provider.")
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Tighten weak meetings to the policy (audited).")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="table (for people) or csv (for spreadsheets).")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file instead of stdout.")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="Scan this host's meetings (repeat); default: every user listed."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=365, help="Look this many days ahead.")] = 30,
) -> None:
    """Flag upcoming meetings whose settings are weaker than the policy; exit 1 if any are."""
    from provisioner.errors import ProvisionerError
    from provisioner.scan.commands import render_fixes, run_scan

    if fmt not in ("table", "csv"):
        typer.echo(f"--format {fmt}: use table or csv", err=True)
        raise typer.Exit(2)
    settings = _settings()
    try:
        run = run_async(run_scan(settings, provider=provider, fix=fix, hosts=host or [], days=days))
    except (SettingsError, ProvisionerError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    text = run.render("csv" if fmt == "csv" else "table")
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
    if run.fixes is not None:
        typer.echo(render_fixes(run.fixes) or "nothing to fix", err=True)
    if run.report.weak:
        raise typer.Exit(1)


def main() -> None:
    app()
