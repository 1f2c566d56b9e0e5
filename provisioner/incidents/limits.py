"""How large an incident report's request may be: room for every attachment it may carry.

The general `api.max_body_bytes` (256 KiB) is right for meetings and forms but would cut a
report's screenshots short of `incidents.max_attachment_bytes`, which the form promises.
The two routes that file a report get a limit of their own, derived from the attachment
settings: the raw files for the multipart form, base64 (4/3 the size) for the JSON API,
plus room for the text fields. Never less than the general limit.
"""

from __future__ import annotations

from provisioner.settings import Settings

TEXT_ROOM = 64 * 1024  # the summary, the statement, the form's other fields and framing


def incident_body_limits(settings: Settings) -> dict[tuple[str, str], int]:
    """(method, path) -> bytes for the report routes (see the module docstring)."""
    files = settings.incidents.max_attachments * settings.incidents.max_attachment_bytes
    base64 = -(-files * 4 // 3)  # rounded up
    general = settings.api.max_body_bytes
    return {
        ("POST", "/incidents/new"): max(general, files + TEXT_ROOM),
        ("POST", "/api/v1/incidents"): max(general, base64 + TEXT_ROOM),
    }
