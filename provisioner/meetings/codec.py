"""Effective settings to and from the JSON column they are stored in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from provisioner.policy.model import MeetingSettings

_ADAPTER: TypeAdapter[MeetingSettings] = TypeAdapter(MeetingSettings)


def settings_to_json(settings: MeetingSettings) -> dict[str, Any]:
    data: dict[str, Any] = _ADAPTER.dump_python(settings, mode="json")
    return data


def settings_from_json(data: Mapping[str, Any]) -> MeetingSettings:
    return _ADAPTER.validate_python(dict(data))
