"""Weak-setting rules and the CSV/table rendering, without any provider."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

from provisioner.policy.document import load_policy
from provisioner.policy.model import MeetingSettings
from provisioner.policy.resolve import effective_for_groups
from provisioner.providers.base import ExistingMeeting
from provisioner.scan import Weakness, weaknesses
from provisioner.scan.render import render_csv, render_table
from provisioner.scan.service import ScanReport, ScanRow

REPO = Path(__file__).resolve().parents[3]


def policy() -> MeetingSettings:
    return effective_for_groups(load_policy(REPO / "config" / "policy.yaml"), []).settings


def meeting(**changes: object) -> ExistingMeeting:
    base = ExistingMeeting(
        provider="zoom",
        provider_meeting_id="123",
        host_email="carl@example.com",
        topic="Team sync",
        start=None,
        passcode_set=True,
        waiting_room=True,
        sign_in_required=True,
        join_before_host=False,
        personal_meeting_id=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class TestWeaknesses:
    def test_a_strong_meeting_has_none(self) -> None:
        assert weaknesses(meeting(), policy()) == ()

    def test_each_weak_setting_is_named_in_a_fixed_order(self) -> None:
        weak = meeting(
            passcode_set=False,
            waiting_room=False,
            sign_in_required=False,
            join_before_host=True,
            personal_meeting_id=True,
        )
        assert weaknesses(weak, policy()) == tuple(Weakness)

    def test_settings_the_provider_does_not_report_are_not_guessed(self) -> None:
        unknown = meeting(
            passcode_set=None, waiting_room=None, sign_in_required=None, join_before_host=None
        )
        assert weaknesses(unknown, policy()) == ()

    def test_a_policy_that_does_not_ask_for_a_control_does_not_flag_it(self) -> None:
        loose = dataclasses.replace(policy(), waiting_room=False, join_before_host=True)
        weak = meeting(waiting_room=False, join_before_host=True)
        assert weaknesses(weak, loose) == ()


class TestRender:
    def test_csv_neutralises_formulas_in_topics(self) -> None:
        row = ScanRow(meeting(topic='=HYPERLINK("http://evil")'), (Weakness.NO_PASSCODE,), False)
        [header, values] = list(csv.reader(io.StringIO(render_csv(ScanReport((row,))))))
        assert header[:3] == ["provider", "meeting_id", "host"]
        assert values[3].startswith("'=")
        assert values[-1] == "no_passcode"

    def test_the_table_counts_and_names_unscannable_providers(self) -> None:
        report = ScanReport(
            (ScanRow(meeting(), (), True),), unsupported=("jitsi",), failed={"webex": "X"}
        )
        text = render_table(report)
        assert "1 meetings, 0 with weak settings" in text
        assert "jitsi: cannot list meetings (not scanned)" in text
        assert "webex: scan failed (X)" in text
