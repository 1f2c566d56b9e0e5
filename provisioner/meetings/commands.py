"""`provisioner meetings ...`: attendance, expel, lock, end and rotate from a terminal.

For a responder at a console during an incident, when the web page is not at hand. The
commands open the database and providers from the service's own configuration, so whoever
can run them can already read everything; `--as` names the person acting, who is recorded
in the audit trail as `cli:<email>` with the responder's rights (any meeting, never the
host's link). Nothing printed here is a join link or passcode.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from provisioner.auth.principal import Principal
from provisioner.auth.roles import Role
from provisioner.providers.base import MeetingProvider

if TYPE_CHECKING:  # the app's modules load only when a command runs
    from provisioner.state import AppState

T = TypeVar("T")

meetings_app = typer.Typer(
    help="Act on a meeting during an incident (as a responder).", no_args_is_help=True
)

AsOption = Annotated[
    str,
    typer.Option(
        "--as", help="Your email: who is acting, for the audit trail.", show_default=False
    ),
]


def cli_actor(email: str) -> Principal:
    """The person at the console, with a responder's rights; the subject says it was the CLI."""
    address = email.strip().lower()
    if "@" not in address or any(c.isspace() for c in address):
        typer.echo(f"--as {email!r}: give your email address", err=True)
        raise typer.Exit(2)
    return Principal(
        subject=f"cli:{address}",
        email=address,
        name=address,
        groups=(),
        scopes=frozenset(),
        roles=frozenset({Role.RESPONDER}),
    )


def _run(meeting_id: str, work: Callable[[AppState, MeetingProvider], Awaitable[T]]) -> T:
    """Build the app's collaborators, find the meeting's provider, run `work`, close all.

    A `ProvisionerError` (unknown meeting, unsupported feature, provider failure) is
    printed as its title and detail and exits 1.
    """
    from provisioner.app import build_state, close_state
    from provisioner.cli import _settings, run_async
    from provisioner.errors import ProvisionerError
    from provisioner.meetings.models import Meeting
    from provisioner.providers.registry import pick
    from provisioner.settings import SettingsError

    settings = _settings()

    async def main() -> T:
        try:
            state = build_state(settings)
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        try:
            async with state.db.session() as session:
                meeting = await session.get(Meeting, meeting_id)
                provider_name = meeting.provider if meeting is not None else ""
            if meeting is None:
                typer.echo(f"No such meeting: {meeting_id}", err=True)
                raise typer.Exit(1)
            return await work(state, pick(state.providers, provider_name))
        except ProvisionerError as exc:
            typer.echo(f"{exc.title}: {exc.detail}", err=True)
            raise typer.Exit(1) from None
        finally:
            await close_state(state)

    return run_async(main())


def _act(
    meeting_id: str,
    as_email: str,
    action: Callable[..., Awaitable[T]],
    *,
    actor_arg: str = "actor",
    **extra: object,
) -> T:
    """Run `action(provisioning, meeting_id=, actor=, provider=, **extra)` as `--as`.

    `actor_arg` names the keyword the person acting goes in (`end_meeting` calls it `host`).
    """
    actor = cli_actor(as_email)

    async def work(state: AppState, provider: MeetingProvider) -> T:
        return await action(
            state.provisioning,
            meeting_id=meeting_id,
            provider=provider,
            **{actor_arg: actor},
            **extra,
        )

    return _run(meeting_id, work)


@meetings_app.command("attendance")
def attendance(
    meeting_id: Annotated[str, typer.Argument(help="The meeting's id.")],
    as_email: AsOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Who is in the call, matched against the invite list; exit 3 if anyone is unknown."""
    from provisioner.meetings.attendance import AttendanceReport, check_attendance

    report: AttendanceReport = _act(meeting_id, as_email, check_attendance)
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        for p in report.participants:
            seen = p.email or "-"
            typer.echo(f"{p.status:8} {p.name}  <{seen}>  {p.participant_id or ''}  {p.note or ''}")
        missing = [i.email for i in report.invited if not i.present]
        typer.echo(f"{len(report.participants)} participant(s); not seen: {', '.join(missing)}")
    if report.unknown:
        raise typer.Exit(3)


@meetings_app.command("expel")
def expel(
    meeting_id: Annotated[str, typer.Argument(help="The meeting's id.")],
    participant_id: Annotated[str, typer.Argument(help="From `meetings attendance`.")],
    as_email: AsOption,
) -> None:
    """Remove one participant from the running meeting."""
    from provisioner.meetings.controls import expel_participant

    _act(meeting_id, as_email, expel_participant, participant_id=participant_id)
    typer.echo(f"removed {participant_id} from {meeting_id}")


@meetings_app.command("lock")
def lock(
    meeting_id: Annotated[str, typer.Argument(help="The meeting's id.")], as_email: AsOption
) -> None:
    """Let nobody new join the running meeting."""
    from provisioner.meetings.controls import lock_meeting

    _act(meeting_id, as_email, lock_meeting)
    typer.echo(f"locked {meeting_id}")


@meetings_app.command("end")
def end(
    meeting_id: Annotated[str, typer.Argument(help="The meeting's id.")], as_email: AsOption
) -> None:
    """End the running meeting for everyone."""
    from provisioner.meetings.lifecycle import end_meeting

    _act(meeting_id, as_email, end_meeting, actor_arg="host")
    typer.echo(f"ended {meeting_id}")


@meetings_app.command("rotate")
def rotate(
    meeting_id: Annotated[str, typer.Argument(help="The meeting's id.")],
    as_email: AsOption,
    reason: Annotated[str, typer.Option(help="Why; kept in the audit trail.")] = "link leaked",
) -> None:
    """Replace a leaked link; prints the new meeting's id (the worker sends the details)."""
    from provisioner.meetings.rotate import rotate_meeting

    body = _act(meeting_id, as_email, rotate_meeting, reason=reason)
    typer.echo(f"rotated {meeting_id} -> {body['id']}; the worker sends the new details")
