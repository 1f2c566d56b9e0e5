"""Who becomes the host: the caller, or the employee a calendar integration names.

An integration (client-credentials token) has no mailbox and no groups, so it may only
create meetings for a named employee and only with `meetings:write:on_behalf`. The
employee becomes the host; the integration's client id goes into the audit log, so IT can
tell a meeting someone asked for from one a calendar system made for them.
"""

from __future__ import annotations

from provisioner.auth.errors import PermissionDenied
from provisioner.auth.principal import Principal
from provisioner.errors import FieldError
from provisioner.meetings.errors import InvalidRequest
from provisioner.meetings.schemas import MeetingCreate
from provisioner.meetings.service import Provisioned, Provisioning, provision_meeting
from provisioner.providers.base import MeetingProvider

ON_BEHALF_SCOPE = "meetings:write:on_behalf"


def on_behalf_host(request: MeetingCreate) -> Principal:
    """The named employee as host. Their groups are unknown here: org defaults apply."""
    assert request.on_behalf_of is not None  # noqa: S101 (checked by the caller)
    email = request.on_behalf_of.email
    return Principal(
        subject=f"email:{email}",
        email=email,
        name=request.on_behalf_of.name,
        groups=(),
        scopes=frozenset(),
    )


async def provision_for(
    deps: Provisioning,
    *,
    request: MeetingCreate,
    caller: Principal,
    provider: MeetingProvider,
    idempotency_key: str | None,
    fingerprint: str,
) -> Provisioned:
    """Provision for the caller, or for `request.on_behalf_of` when an integration asks.

    Raises:
        InvalidRequest: an integration named nobody.
        PermissionDenied: a person used `on_behalf_of`, or the integration lacks the scope.
        Everything `provision_meeting` raises.
    """
    if request.on_behalf_of is None:
        if caller.is_integration:
            raise InvalidRequest(
                "an integration creates meetings for a named employee",
                errors=(FieldError("on_behalf_of", "required for integrations"),),
            )
        return await provision_meeting(
            deps,
            request=request,
            requester=caller,
            provider=provider,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
    if not caller.is_integration:
        raise PermissionDenied("only calendar integrations act on behalf of others", scope="role")
    if not caller.has_scope(ON_BEHALF_SCOPE):
        raise PermissionDenied(f"this needs the {ON_BEHALF_SCOPE!r} scope", scope=ON_BEHALF_SCOPE)
    host = on_behalf_host(request)
    result = await provision_meeting(
        deps,
        request=request,
        requester=host,
        provider=provider,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        # Keys belong to the caller: two integrations may pick the same key for one host.
        idempotency_scope=caller.subject,
        # The host's link is the host's (for Jitsi, a moderator link): not the calendar's.
        reveal_host_join=False,
        acting_for_host=caller,
    )
    return result
