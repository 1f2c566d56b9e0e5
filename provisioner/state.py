"""What the running app holds: built once in the lifespan, reached through `StateDep`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.auth.bearer import BearerVerifier
from provisioner.crypto import FieldCipher
from provisioner.db import Database
from provisioner.delivery.base import Channel
from provisioner.delivery.worker import DeliveryWorker
from provisioner.meetings.service import Provisioning
from provisioner.policy.document import PolicyDocument
from provisioner.providers.base import MeetingProvider
from provisioner.secrets.runtime import SecretsRuntime
from provisioner.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    cipher: FieldCipher
    policy: PolicyDocument
    providers: Mapping[str, MeetingProvider]
    channels: Mapping[str, Channel]
    verifier: BearerVerifier
    worker: DeliveryWorker
    # The secret store and the settings as written; None when built without one (tests).
    secrets: SecretsRuntime | None = None

    @property
    def provisioning(self) -> Provisioning:
        return Provisioning(
            db=self.db,
            policy=self.policy,
            cipher=self.cipher,
            settings=self.settings,
            channels=frozenset(self.channels),
        )
