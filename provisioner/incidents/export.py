"""Exports of a verified incident: JSON, a self-contained HTML report, a provider notice.

The HTML report is meant to be filed, printed to PDF and handed to people outside the
service, so it stands alone: inline CSS, no scripts, no external resources, and it carries
the evidence hash so a printed copy can be checked against the stored one. Only a verified
`IncidentView` can be exported: tampered evidence never reaches a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from provisioner.auth.errors import PermissionDenied
from provisioner.delivery.render import format_meeting_time, provider_label
from provisioner.incidents.evidence import iso
from provisioner.incidents.service import IncidentView
from provisioner.settings import Settings, default_abuse_contacts

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates"


@dataclass(frozen=True)
class ProviderNotice:
    """A message the responder can send to the provider's abuse/security contact."""

    provider: str
    contact: str
    subject: str
    body: str


def provider_contact(provider: str, settings: Settings) -> str:
    """Configured contacts override the defaults one provider at a time."""
    contacts = {**default_abuse_contacts(), **settings.incidents.provider_contacts}
    return contacts.get(provider, "the provider's abuse or trust & safety contact")


def provider_notice(view: IncidentView, settings: Settings) -> ProviderNotice:
    """Meeting ids and times, who was not invited, and what happened, in plain text.

    The reporter's statement is not copied in: it is personal and goes to the provider
    only if the responder decides so. No join link or passcode is ever included. Only a
    responder may have it (it lists the attendance).

    Raises:
        PermissionDenied: the viewer is not a responder.
    """
    if not view.viewer_is_responder:
        raise PermissionDenied("only responders prepare the provider notice", scope="role")
    evidence = view.evidence
    meeting = evidence["meeting"]
    label = provider_label(meeting["provider"])
    unknown = [p for p in evidence.get("participants", {}).get("items", ()) if p.get("unknown")]
    lines = [
        f"To the {label} abuse / trust and safety team,",
        "",
        f"We are reporting abuse in a {label} meeting hosted by our organisation.",
        "",
        f"Meeting id at {label}: {meeting.get('provider_meeting_id') or 'unknown'}",
        f"Scheduled: {meeting['starts_at']} to {meeting['ends_at']} (UTC offsets included)",
        f"Host account: {meeting['host']['email']}",
        f"Reported at: {evidence['frozen_at']}",
        f"Our reference: incident {view.incident.id}",
        f"Summary: {view.incident.summary}",
    ]
    if unknown:
        lines += ["", "Participants who were not invited (as your service reported them):"]
        for person in unknown:
            lines.append(
                f"- {person['name']}"
                + (f" <{person['email']}>" if person.get("email") else "")
                + (
                    f", participant id {person['provider_participant_id']}"
                    if person.get("provider_participant_id")
                    else ""
                )
                + (f", joined {person['joined_at']}" if person.get("joined_at") else "")
                + (f", left {person['left_at']}" if person.get("left_at") else "")
            )
    lines += [
        "",
        "Please investigate these accounts and preserve your logs for this meeting. We can",
        "provide further records on request.",
        "",
        f"Evidence hash (SHA-256) on our side: {view.incident.evidence_sha256}",
    ]
    return ProviderNotice(
        provider=meeting["provider"],
        contact=provider_contact(meeting["provider"], settings),
        subject=f"Abuse report: {label} meeting {meeting.get('provider_meeting_id') or ''}".strip(),
        body="\n".join(lines),
    )


# What a non-responder sees in place of the responder-only parts of the snapshot.
WITHHELD_REASON = "only HR/security see this part of the evidence"
_REPORTER_EVIDENCE = ("format", "incident_id", "frozen_at", "reporter", "meeting", "statement")


def visible_evidence(view: IncidentView) -> dict[str, Any]:
    """The snapshot as this viewer may see it.

    Responders get it exactly as frozen, and so does a reporter who hosted the meeting: it
    describes their own meeting, whose attendance, settings, invitees and deliveries the
    host sees on the meeting page anyway. Any other reporter (an invitee) gets their own
    statement, the attachments' listing and which meeting it was about; the provider's
    read-back, the attendance list, the invitees, the deliveries, the audit trail and the
    timeline built from them are withheld (the keys stay, empty, so every page renders).
    """
    evidence = view.evidence
    if view.viewer_is_responder or _reporter_is_host(view):
        return evidence
    shown: dict[str, Any] = {key: evidence[key] for key in _REPORTER_EVIDENCE if key in evidence}
    shown["attachments"] = list(evidence.get("attachments", ()))
    shown["settings"] = {
        "status": "withheld",
        "reason": WITHHELD_REASON,
        "policy": {},
        "not_enforced": [],
    }
    shown["participants"] = {"status": "withheld", "reason": WITHHELD_REASON}
    shown["invitees"] = []
    shown["deliveries"] = []
    shown["audit_trail"] = []
    shown["timeline"] = []
    shown["withheld"] = True
    return shown


def _reporter_is_host(view: IncidentView) -> bool:
    return view.incident.reporter_role == "host"


def incident_json(view: IncidentView, settings: Settings) -> dict[str, Any]:
    """The record as the viewer may see it.

    A responder gets the evidence exactly as frozen plus the whole workflow around it. A
    reporter who is not a responder never gets the responder notes, the law-enforcement
    record or the provider notice; an invitee reporter gets only their own statement, the
    status and the attachments (see `visible_evidence`), a host reporter also the snapshot
    of their own meeting and the follow-ups asked of them (settings fixes, host training).
    """
    incident = view.incident
    responder = view.viewer_is_responder
    host = _reporter_is_host(view)
    notice = (
        provider_notice(view, settings)
        if responder
        else ProviderNotice(provider="", contact="", subject="", body="")
    )
    fixes = view.fixes if responder or host else []
    return {
        "id": incident.id,
        "meeting_id": incident.meeting_id,
        "summary": incident.summary,
        "status": incident.status,
        "reporter": {
            "email": incident.reporter_email,
            "name": incident.reporter_name,
            "role": incident.reporter_role,
        },
        "evidence_sha256": incident.evidence_sha256,
        "evidence_verified": True,
        "evidence": visible_evidence(view),
        "attachments": [
            {
                "id": a.id,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in incident.attachments
        ],
        "notes": [
            {
                "author": n.author_name,
                "body": n.body,
                "from_status": n.from_status,
                "to_status": n.to_status,
                "created_at": n.created_at,
            }
            for n in incident.notes
        ]
        if responder
        else [],
        "suggested_fixes": [
            {
                "code": f.code,
                "control": f.control,
                "reason": f.reason,
                "action": f.action,
                "href": f.href,
                "applied": f.code in incident.fixes_applied,
            }
            for f in fixes
        ],
        "follow_ups": {
            "fixes_applied": list(incident.fixes_applied) if responder or host else [],
            "law_enforcement_contacted": incident.law_enforcement_contacted if responder else None,
            "law_enforcement_reference": incident.law_enforcement_reference if responder else None,
            "provider_notice_sent_at": iso(incident.provider_notice_sent_at) if responder else None,
            "training_acknowledged_at": iso(incident.training_acknowledged_at)
            if responder or host
            else None,
        },
        "provider_notice": {
            "contact": notice.contact,
            "subject": notice.subject,
            "body": notice.body,
        },
        "created_at": incident.created_at,
        "updated_at": incident.updated_at,
    }


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["provider"] = provider_label
    return environment


_ENVIRONMENT: jinja2.Environment | None = None


def render_html(view: IncidentView, settings: Settings) -> str:
    """The printable, self-contained report."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = _environment()
    record = incident_json(view, settings)
    evidence = record["evidence"]
    meeting = evidence["meeting"]
    when = _when(meeting)
    return _ENVIRONMENT.get_template("incidents/report.html").render(
        record=record, evidence=evidence, meeting=meeting, when=when
    )


def _when(meeting: dict[str, Any]) -> str:
    try:
        return format_meeting_time(
            datetime.fromisoformat(meeting["starts_at"]),
            meeting["timezone"],
            datetime.fromisoformat(meeting["ends_at"]),
        )
    except (KeyError, ValueError):
        return f"{meeting.get('starts_at')} to {meeting.get('ends_at')}"
