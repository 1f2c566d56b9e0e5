"""The dead-letter alert: one recipient, who was not reached and why, nothing secret."""

from __future__ import annotations

from datetime import UTC, datetime

from provisioner.delivery.alerts import DeadLetterAlert
from provisioner.delivery.email import EmailChannel
from provisioner.providers.base import Person
from provisioner.settings import EmailSettings

ALERT = DeadLetterAlert(
    delivery_id="d-1",
    meeting_id="m-1",
    topic="<script>alert(1)</script> Planning",
    start=datetime(2030, 3, 4, 14, 0, tzinfo=UTC),
    end=datetime(2030, 3, 4, 15, 0, tzinfo=UTC),
    timezone="Europe/Berlin",
    recipient=Person(email="dana@example.com", name="Dana Host"),
    failed_recipient=Person(email="ana@example.com", name="Ana Lima"),
    failed_channel="email",
    attempts=6,
    reason="ChannelRejected",
)


class TestBuildAlert:
    def test_one_recipient_names_the_failure_and_escapes_html(self) -> None:
        message = EmailChannel(EmailSettings()).build_alert(ALERT)
        assert [a.addr_spec for a in message["To"].addresses] == ["dana@example.com"]
        assert message["Cc"] is None and message["Bcc"] is None
        assert message["Subject"].startswith("Could not deliver:")
        html = message.get_body(("html",))
        text = message.get_body(("plain",))
        assert html is not None and text is not None
        assert "<script>" not in html.get_content()
        assert "ana@example.com" in text.get_content()
        assert "after 6 attempts" in text.get_content()
        assert "jwt=" not in message.as_string() and "http" not in text.get_content()
