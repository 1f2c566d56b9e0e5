"""`provisioner secrets ...`: check references and rotate the data-encryption key.

Registered on the main Typer app in `provisioner/cli.py`; the shared helpers (`run_async`,
settings loading) are imported from there when a command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

secrets_app = typer.Typer(help="Secret references and data-key rotation.", no_args_is_help=True)


@secrets_app.command("check")
def secrets_check() -> None:
    """Resolve every secret reference in the settings and say which store answered
    (never a value); exit 2 if any is missing or its store is unreachable."""
    from provisioner.cli import _settings, run_async
    from provisioner.secrets.resolve import references
    from provisioner.secrets.runtime import load_secrets
    from provisioner.settings import SettingsError

    settings = _settings()
    refs = references(settings)
    try:
        _, runtime = load_secrets(settings)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    run_async(runtime.aclose())
    for key, ref in sorted(refs.items()):
        typer.echo(f"{key}: {ref.scheme} ok")
    typer.echo(f"{len(refs)} reference(s) resolved")


@secrets_app.command("rotate-key")
def rotate_key(
    new_key_id: Annotated[
        str, typer.Option("--new-key-id", help="The data key id to re-encrypt everything under.")
    ],
    batch_size: Annotated[
        int, typer.Option(help="Rows per transaction (short transactions keep it online).")
    ] = 200,
) -> None:
    """Re-encrypt every sealed column under NEW_KEY_ID while the service keeps running.

    The key must already be configured in security.data_keys and be the active key
    (security.active_key) on every running instance; old keys must stay configured until
    this reports nothing unreadable. Safe to interrupt and run again.
    """
    from provisioner.cli import _settings, run_async
    from provisioner.crypto import cipher_from_settings
    from provisioner.db import Database, create_engine
    from provisioner.secrets.rekey import rekey_all
    from provisioner.secrets.runtime import load_secrets
    from provisioner.settings import SettingsError

    settings = _settings()
    try:
        resolved, runtime = load_secrets(settings)
        cipher = cipher_from_settings(
            resolved.security, development=resolved.environment == "development"
        )
    except (SettingsError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    keys = resolved.security.data_keys
    active = resolved.security.active_key or (sorted(keys)[-1] if keys else "dev")
    if new_key_id not in keys:
        typer.echo(f"security.data_keys has no key {new_key_id!r}: add it first", err=True)
        raise typer.Exit(2)
    if active != new_key_id:
        typer.echo(
            f"the active key is {active!r}: set security.active_key = {new_key_id!r} and roll "
            "it out to every instance first, or new rows keep using the old key",
            err=True,
        )
        raise typer.Exit(2)

    async def main() -> bool:
        db = Database(create_engine(resolved.database))
        try:
            report = await rekey_all(
                db, cipher=cipher, key_id=new_key_id, actor="cli", batch_size=batch_size
            )
        finally:
            await db.dispose()
            await runtime.aclose()
        for column, count in report.rotated.items():
            typer.echo(
                f"{column}: {count} re-encrypted, {report.raced[column]} changed meanwhile, "
                f"{report.unreadable[column]} unreadable"
            )
        return report.complete

    if not run_async(main()):
        typer.echo("some values could not be decrypted with any configured key", err=True)
        raise typer.Exit(1)
    typer.echo(f"every sealed value is under {new_key_id!r}; older keys may now be removed")
