"""What a browser sign-in and a report form may carry into the tables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from provisioner.auth.bearer import NAME_MAX
from provisioner.auth.session import session_row
from provisioner.crypto import FieldCipher
from provisioner.incidents.schemas import AttachmentIn, IncidentCreate


def test_a_browser_sign_in_shortens_a_long_name_as_a_token_does() -> None:
    claims: dict[str, Any] = {"sub": "ana", "email": "ana@example.com", "name": "N" * 1000}
    row = session_row(
        session_id="a-session-id",
        claims=claims,
        groups_claim="groups",
        id_token=None,
        lifetime_seconds=60,
        cipher=FieldCipher({"k": bytes(32)}, active="k"),
    )
    assert row.name == "N" * NAME_MAX


@pytest.mark.parametrize("field", ["summary", "statement", "meeting_id"])
def test_the_report_form_refuses_nul_in_its_text(field: str) -> None:
    values = {"meeting_id": "m-1", "summary": "Zoombombed", "statement": "Someone shouted."}
    values[field] = values[field] + "\x00"
    with pytest.raises(ValidationError) as refused:
        IncidentCreate(**values)
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


def test_an_attachment_name_with_nul_is_refused() -> None:
    with pytest.raises(ValidationError):
        AttachmentIn(filename="a\x00.png", content_type="image/png", content_base64="AA==")
