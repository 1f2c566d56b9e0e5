"""JitsiProvider: config validation, room names, token claims, passcodes and verify()."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from provisioner.policy.model import Chat, Control, MeetingSettings, Presenters
from provisioner.providers.base import (
    Feature,
    JoinDetails,
    MeetingProvider,
    MeetingSpec,
    Person,
    ProvisionedMeeting,
)
from provisioner.providers.errors import ProviderRejected, ProviderUnsupported
from provisioner.providers.jitsi import JitsiConfig, JitsiProvider, tokens
from provisioner.providers.jitsi import provider as provider_module

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
START = NOW + timedelta(days=1)
SECRET = "0123456789abcdef0123456789abcdef-hs256"
JAAS_APP = "vpaas-magic-cookie-0123456789abcdef"
HOST = Person(email="Hanna.Host@Example.com", name="Hanna Host")
ANN = Person(email="ann@example.com", name="Ann")
BOB = Person(email="Bob@Partner.org", name="Bob")


def clock() -> datetime:
    return NOW


def make_settings(**overrides: Any) -> MeetingSettings:
    base = MeetingSettings(
        passcode_required=False,
        passcode_min_length=8,
        waiting_room=True,
        sign_in_required=True,
        sign_in_domains=(),
        join_before_host=False,
        presenters=Presenters.HOST_ONLY,
        chat=Chat.EVERYONE,
        mute_on_entry=True,
        per_invitee_links=True,
        invitee_domains=None,
        max_duration_minutes=240,
    )
    return replace(base, **overrides)


def make_spec(**overrides: Any) -> MeetingSpec:
    base = MeetingSpec(
        meeting_id="mtg_01",
        topic="Quarterly review",
        start=START,
        duration=timedelta(minutes=60),
        timezone="Europe/Berlin",
        host=HOST,
        invitees=(ANN, BOB),
        settings=make_settings(),
    )
    return replace(base, **overrides)


def hs256_config(**overrides: Any) -> JitsiConfig:
    values: dict[str, Any] = {
        "base_url": "https://meet.example.com",
        "app_id": "provisioner",
        "domain": "meet.example.com",
        "app_secret": SECRET,
    }
    values.update(overrides)
    return JitsiConfig.model_validate(values)


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def rs256_config(rsa_pem: str) -> JitsiConfig:
    return JitsiConfig.model_validate(
        {
            "base_url": "https://meet.example.com",
            "app_id": "provisioner",
            "domain": "meet.example.com",
            "algorithm": "RS256",
            "private_key": rsa_pem,
            "key_id": "provisioner/2030-01",
        }
    )


@pytest.fixture
def jaas_config(rsa_pem: str) -> JitsiConfig:
    return JitsiConfig.model_validate(
        {
            "base_url": "https://8x8.vc",
            "app_id": JAAS_APP,
            "profile": "jaas",
            "algorithm": "RS256",
            "private_key": rsa_pem,
            "key_id": f"{JAAS_APP}/4f4910",
        }
    )


@pytest.fixture
def provider() -> JitsiProvider:
    return JitsiProvider(hs256_config(), clock=clock)


def token_of(join: JoinDetails) -> str:
    query = parse_qs(urlsplit(join.url).query)
    return query["jwt"][0]


def unverified(join: JoinDetails) -> dict[str, Any]:
    return jwt.decode(token_of(join), options={"verify_signature": False})


def all_links(created: ProvisionedMeeting) -> list[JoinDetails]:
    return [created.host, *created.personal.values()]


class TestConfig:
    def test_hs256_needs_a_secret(self) -> None:
        with pytest.raises(ValidationError, match="app_secret"):
            hs256_config(app_secret=None)

    def test_hs256_secret_must_be_32_bytes(self) -> None:
        with pytest.raises(ValidationError):
            hs256_config(app_secret="x" * 31)

    def test_hs256_with_a_private_key_is_contradictory(self, rsa_pem: str) -> None:
        with pytest.raises(ValidationError, match="RS256"):
            hs256_config(private_key=rsa_pem)

    def test_rs256_needs_a_key(self) -> None:
        with pytest.raises(ValidationError):
            hs256_config(algorithm="RS256", app_secret=None, key_id="k")

    def test_rs256_needs_a_key_id(self, rsa_pem: str) -> None:
        with pytest.raises(ValidationError, match="key_id"):
            hs256_config(algorithm="RS256", app_secret=None, private_key=rsa_pem)

    def test_rs256_with_an_app_secret_is_contradictory(self, rsa_pem: str) -> None:
        with pytest.raises(ValidationError, match="app_secret"):
            hs256_config(algorithm="RS256", private_key=rsa_pem, key_id="k")

    def test_only_one_private_key_source(self, rsa_pem: str, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="only one"):
            hs256_config(
                algorithm="RS256",
                app_secret=None,
                private_key=rsa_pem,
                private_key_file=tmp_path / "key.pem",
                key_id="k",
            )

    def test_self_hosted_needs_a_domain(self) -> None:
        with pytest.raises(ValidationError, match="domain"):
            hs256_config(domain=None)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"algorithm": "HS256", "private_key": None, "key_id": None, "app_secret": SECRET},
            {"key_id": "other-app/4f4910"},
            {"audience": "something-else"},
            {"domain": "meet.example.com"},
        ],
    )
    def test_jaas_contradictions(self, jaas_config: JitsiConfig, overrides: Any) -> None:
        with pytest.raises(ValidationError):
            JitsiConfig.model_validate({**jaas_config.model_dump(), **overrides})

    def test_plain_http_is_refused_except_on_loopback(self) -> None:
        with pytest.raises(ValidationError, match="https"):
            hs256_config(base_url="http://meet.example.com")
        assert hs256_config(base_url="http://127.0.0.1:8443").join_base == ("http://127.0.0.1:8443")

    def test_base_url_without_query(self) -> None:
        with pytest.raises(ValidationError):
            hs256_config(base_url="https://meet.example.com/?x=1")

    def test_unknown_keys_are_refused(self) -> None:
        with pytest.raises(ValidationError):
            hs256_config(secret="typo")

    @pytest.mark.parametrize(
        "overrides",
        [
            {"join_grace_minutes": 121},
            {"join_grace_minutes": -1},
            {"early_join_minutes": 61},
            {"room_prefix": "Has Spaces/"},
        ],
    )
    def test_bounds(self, overrides: Any) -> None:
        with pytest.raises(ValidationError):
            hs256_config(**overrides)

    def test_frozen(self) -> None:
        config = hs256_config()
        with pytest.raises(ValidationError):
            config.app_id = "other"  # type: ignore[misc]

    def test_secrets_stay_out_of_repr(self, rs256_config: JitsiConfig) -> None:
        assert SECRET not in repr(hs256_config())
        keys = tokens.load_keys(hs256_config())
        assert SECRET not in repr(keys)
        assert "PRIVATE KEY" not in repr(rs256_config)

    def test_key_file_is_read(self, rsa_pem: str, tmp_path: Path) -> None:
        path = tmp_path / "jitsi.pem"
        path.write_text(rsa_pem)
        config = hs256_config(
            algorithm="RS256", app_secret=None, private_key_file=path, key_id="k1"
        )
        assert isinstance(JitsiProvider(config, clock=clock), MeetingProvider)

    def test_missing_key_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="private_key_file"):
            hs256_config(
                algorithm="RS256",
                app_secret=None,
                private_key_file=tmp_path / "absent.pem",
                key_id="k1",
            )

    def test_errors_do_not_quote_the_input(self) -> None:
        with pytest.raises(ValidationError) as info:
            hs256_config(app_secret="too-short-but-still-secret")
        assert "too-short-but-still-secret" not in str(info.value)

    def test_garbage_key_does_not_echo(self) -> None:
        garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
        with pytest.raises(ValidationError, match="private_key") as info:
            hs256_config(algorithm="RS256", app_secret=None, private_key=garbage, key_id="k1")
        assert "bm90IGEga2V5" not in str(info.value)

    def test_encrypted_or_non_rsa_key_is_refused(self, rsa_pem: str) -> None:
        private = serialization.load_pem_private_key(rsa_pem.encode(), None)
        encrypted = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        ).decode()
        with pytest.raises(ValidationError, match="encrypted"):
            hs256_config(algorithm="RS256", app_secret=None, private_key=encrypted, key_id="k")
        ec_pem = (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
        with pytest.raises(ValidationError, match="RSA"):
            hs256_config(algorithm="RS256", app_secret=None, private_key=ec_pem, key_id="k")

    def test_small_rsa_key_is_refused(self) -> None:
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        pem = small.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with pytest.raises(ValidationError, match="2048"):
            hs256_config(algorithm="RS256", app_secret=None, private_key=pem, key_id="k")


class TestContract:
    def test_is_a_meeting_provider(self, provider: JitsiProvider) -> None:
        assert isinstance(provider, MeetingProvider)
        assert provider.name == "jitsi"

    def test_registry_hooks(self) -> None:
        assert JitsiProvider.config_model is JitsiConfig
        built = JitsiProvider.from_config(hs256_config())
        assert isinstance(built, JitsiProvider)
        assert built.config == hs256_config()

    def test_capabilities_are_honest(self) -> None:
        assert JitsiProvider.capabilities == {
            Control.SIGN_IN_REQUIRED,
            Control.PER_INVITEE_LINKS,
            Control.INVITEE_DOMAINS,
            Control.MAX_DURATION,
        }
        for control in (
            Control.PASSCODE,
            Control.WAITING_ROOM,
            Control.JOIN_BEFORE_HOST,
            Control.PRESENTERS,
            Control.CHAT,
            Control.MUTE_ON_ENTRY,
        ):
            assert control not in JitsiProvider.capabilities

    async def test_delete_and_aclose_need_no_server(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        await provider.delete(created.ref)
        await provider.aclose()
        # Nothing was revoked: the tokens stay valid until exp, as documented.
        assert (await provider.verify(spec, created)).mismatched == {}


class TestLifecycle:
    async def test_reschedule_keeps_the_room_and_moves_the_window(
        self, provider: JitsiProvider
    ) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        later = replace(spec, start=spec.start + timedelta(days=1))
        moved = await provider.update(later, created.ref)
        assert moved.provider_meeting_id == created.provider_meeting_id
        assert moved.host.url != created.host.url
        assert (await provider.verify(later, moved)).mismatched == {}
        assert Feature.RESCHEDULE in provider.features

    async def test_end_and_participants_say_plainly_they_are_unsupported(
        self, provider: JitsiProvider
    ) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        for call in (provider.end, provider.list_participants):
            with pytest.raises(ProviderUnsupported):
                await call(created.ref)
        assert Feature.END_FOR_ALL not in provider.features


class TestRoomName:
    async def test_at_least_128_bits_of_lower_case_base32(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="key-1")
        room = created.provider_meeting_id
        assert room == room.lower()
        raw = base64.b32decode(room.upper())
        assert len(raw) * 8 >= 128
        assert created.reference["room"] == room

    async def test_prefix(self) -> None:
        provider = JitsiProvider(hs256_config(room_prefix="corp-"), clock=clock)
        created = await provider.create(make_spec(), idempotency_key="key-1")
        room = created.provider_meeting_id
        assert room.startswith("corp-")
        assert len(base64.b32decode(room.removeprefix("corp-").upper())) == 20

    async def test_retry_lands_in_the_same_room(self, provider: JitsiProvider) -> None:
        first = await provider.create(make_spec(), idempotency_key="key-1")
        again = await provider.create(make_spec(), idempotency_key="key-1")
        assert first.provider_meeting_id == again.provider_meeting_id

    async def test_other_key_or_meeting_gets_another_room(self, provider: JitsiProvider) -> None:
        base = await provider.create(make_spec(), idempotency_key="key-1")
        other_key = await provider.create(make_spec(), idempotency_key="key-2")
        other_meeting = await provider.create(
            make_spec(meeting_id="mtg_02"), idempotency_key="key-1"
        )
        rooms = {
            base.provider_meeting_id,
            other_key.provider_meeting_id,
            other_meeting.provider_meeting_id,
        }
        assert len(rooms) == 3

    async def test_fields_are_framed(self, provider: JitsiProvider) -> None:
        one = await provider.create(make_spec(meeting_id="bc"), idempotency_key="a")
        two = await provider.create(make_spec(meeting_id="c"), idempotency_key="ab")
        assert one.provider_meeting_id != two.provider_meeting_id

    async def test_unguessable_without_the_secret(self, provider: JitsiProvider) -> None:
        other = JitsiProvider(hs256_config(app_secret="f" * 40), clock=clock)
        mine = await provider.create(make_spec(), idempotency_key="key-1")
        theirs = await other.create(make_spec(), idempotency_key="key-1")
        assert mine.provider_meeting_id != theirs.provider_meeting_id


class TestSelfHostedTokens:
    async def test_hs256_claims(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        room = created.provider_meeting_id
        claims = jwt.decode(
            token_of(created.host),
            SECRET,
            algorithms=["HS256"],
            audience="jitsi",
            issuer="provisioner",
            options={"verify_nbf": False, "verify_iat": False},
        )
        assert claims["sub"] == "meet.example.com"
        assert claims["room"] == room
        assert claims["iat"] == int(NOW.timestamp())
        assert claims["nbf"] == int((START - timedelta(minutes=10)).timestamp())
        assert claims["exp"] == int((START + timedelta(minutes=60 + 15)).timestamp())
        user = claims["context"]["user"]
        assert user["email"] == "hanna.host@example.com"
        assert user["name"] == "Hanna Host"
        assert user["id"] == tokens.user_id("HANNA.HOST@example.com")
        assert len(user["id"]) == 32

    async def test_window_follows_config(self) -> None:
        provider = JitsiProvider(
            hs256_config(join_grace_minutes=0, early_join_minutes=0), clock=clock
        )
        created = await provider.create(make_spec(), idempotency_key="k")
        for join in all_links(created):
            claims = unverified(join)
            assert claims["nbf"] == int(START.timestamp())
            assert claims["exp"] == int((START + timedelta(minutes=60)).timestamp())

    async def test_only_the_host_is_moderator(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        host = unverified(created.host)["context"]["user"]
        assert host["moderator"] is True
        assert host["affiliation"] == "owner"
        for join in created.personal.values():
            user = unverified(join)["context"]["user"]
            assert user["moderator"] is False
            assert user["affiliation"] == "member"
            assert not tokens.grants_moderator(unverified(join))

    async def test_join_url(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        room = created.provider_meeting_id
        assert created.host.url == f"https://meet.example.com/{room}?jwt={token_of(created.host)}"
        assert "kid" not in jwt.get_unverified_header(token_of(created.host))

    async def test_rs256(self, rs256_config: JitsiConfig, rsa_pem: str) -> None:
        provider = JitsiProvider(rs256_config, clock=clock)
        created = await provider.create(make_spec(), idempotency_key="k")
        token = token_of(created.host)
        assert jwt.get_unverified_header(token) == {
            "alg": "RS256",
            "kid": "provisioner/2030-01",
            "typ": "JWT",
        }
        private = serialization.load_pem_private_key(rsa_pem.encode(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        claims = jwt.decode(
            token,
            private.public_key(),
            algorithms=["RS256"],
            audience="jitsi",
            options={"verify_nbf": False, "verify_iat": False},
        )
        assert claims["iss"] == "provisioner"
        assert claims["context"]["user"]["moderator"] is True


class TestJaas:
    async def test_claims_header_and_url(self, jaas_config: JitsiConfig) -> None:
        provider = JitsiProvider(jaas_config, clock=clock)
        created = await provider.create(make_spec(), idempotency_key="k")
        room = created.provider_meeting_id
        token = token_of(created.host)
        assert jwt.get_unverified_header(token)["kid"] == f"{JAAS_APP}/4f4910"
        assert created.host.url.startswith(f"https://8x8.vc/{JAAS_APP}/{room}?jwt=")
        host = unverified(created.host)
        assert (host["iss"], host["aud"], host["sub"], host["room"]) == (
            "chat",
            "jitsi",
            JAAS_APP,
            room,
        )
        assert host["context"]["user"]["moderator"] == "true"
        assert host["context"]["features"] == {
            "livestreaming": "true",
            "outbound-call": "true",
            "recording": "true",
            "transcription": "true",
        }
        for join in created.personal.values():
            claims = unverified(join)
            assert claims["context"]["user"]["moderator"] == "false"
            assert set(claims["context"]["features"].values()) == {"false"}
            assert "affiliation" not in claims["context"]["user"]

    async def test_verify(self, jaas_config: JitsiConfig) -> None:
        provider = JitsiProvider(jaas_config, clock=clock)
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        observed = await provider.verify(spec, created)
        assert observed.mismatched == {}
        assert observed.confirmed == created.enforced


class TestPersonalLinks:
    async def test_one_distinct_link_per_invitee(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        assert created.shared is None
        assert set(created.personal) == {"ann@example.com", "bob@partner.org"}
        tokens_seen = {token_of(join) for join in all_links(created)}
        assert len(tokens_seen) == 3
        assert created.join_for("BOB@partner.org") == created.personal["bob@partner.org"]
        bob = unverified(created.personal["bob@partner.org"])["context"]["user"]
        assert bob["email"] == "bob@partner.org"

    async def test_repeated_address_gets_one_link(self, provider: JitsiProvider) -> None:
        spec = make_spec(invitees=(ANN, Person(email="ANN@example.com", name="Ann again")))
        created = await provider.create(spec, idempotency_key="k")
        assert list(created.personal) == ["ann@example.com"]
        assert (await provider.verify(spec, created)).mismatched == {}


class TestPasscode:
    async def test_none_unless_required(self, provider: JitsiProvider) -> None:
        created = await provider.create(make_spec(), idempotency_key="k")
        assert all(join.passcode is None for join in all_links(created))

    @pytest.mark.parametrize(("minimum", "expected"), [(6, 10), (10, 10), (14, 14)])
    async def test_length_and_alphabet(
        self, provider: JitsiProvider, minimum: int, expected: int
    ) -> None:
        settings = make_settings(passcode_required=True, passcode_min_length=minimum)
        created = await provider.create(make_spec(settings=settings), idempotency_key="k")
        passcodes = {join.passcode for join in all_links(created)}
        assert len(passcodes) == 1  # host and every invitee need the same room password
        (passcode,) = passcodes
        assert passcode is not None
        assert len(passcode) == expected
        assert set(passcode) <= set(provider_module.PASSCODE_ALPHABET)
        assert not set(passcode) & set("0O1lIio")

    async def test_drawn_from_secrets(
        self, provider: JitsiProvider, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []

        def choice(alphabet: str) -> str:
            calls.append(alphabet)
            return alphabet[0]

        monkeypatch.setattr(secrets, "choice", choice)
        settings = make_settings(passcode_required=True, passcode_min_length=12)
        created = await provider.create(make_spec(settings=settings), idempotency_key="k")
        assert len(calls) == 12
        assert created.host.passcode == "2" * 12

    async def test_passcode_is_not_claimed_as_enforced(self, provider: JitsiProvider) -> None:
        settings = make_settings(passcode_required=True)
        created = await provider.create(make_spec(settings=settings), idempotency_key="k")
        assert Control.PASSCODE not in created.enforced


class TestEnforced:
    async def test_only_what_the_settings_ask(self, provider: JitsiProvider) -> None:
        loose = make_settings(sign_in_required=False, max_duration_minutes=0)
        created = await provider.create(make_spec(settings=loose), idempotency_key="k")
        assert created.enforced == {Control.PER_INVITEE_LINKS}

    async def test_everything_asked(self, provider: JitsiProvider) -> None:
        strict = make_settings(invitee_domains=("example.com", "partner.org"))
        created = await provider.create(make_spec(settings=strict), idempotency_key="k")
        assert created.enforced == JitsiProvider.capabilities


class TestCreateRefuses:
    async def test_naive_start(self, provider: JitsiProvider) -> None:
        spec = make_spec(start=START.replace(tzinfo=None))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "start"
        assert info.value.provider == "jitsi"

    async def test_meeting_already_over(self, provider: JitsiProvider) -> None:
        spec = make_spec(start=NOW - timedelta(hours=2))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "start"

    async def test_running_meeting_is_fine(self, provider: JitsiProvider) -> None:
        spec = make_spec(start=NOW - timedelta(minutes=30))
        created = await provider.create(spec, idempotency_key="k")
        assert unverified(created.host)["exp"] > int(NOW.timestamp())

    async def test_longer_than_policy(self, provider: JitsiProvider) -> None:
        spec = make_spec(settings=make_settings(max_duration_minutes=30))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "duration"

    async def test_invitee_outside_invitee_domains(self, provider: JitsiProvider) -> None:
        spec = make_spec(settings=make_settings(invitee_domains=("example.com",)))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "invitees"

    async def test_person_outside_sign_in_domains(self, provider: JitsiProvider) -> None:
        spec = make_spec(settings=make_settings(sign_in_domains=("example.com",)))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "invitees"

    async def test_not_an_address(self, provider: JitsiProvider) -> None:
        spec = make_spec(invitees=(Person(email="ann", name="Ann"),))
        with pytest.raises(ProviderRejected) as info:
            await provider.create(spec, idempotency_key="k")
        assert info.value.field == "invitees"


def swap(
    created: ProvisionedMeeting,
    email: str,
    edit: Callable[[dict[str, Any]], None],
    keys: tokens.JitsiKeys,
) -> ProvisionedMeeting:
    """Replace one invitee's token with an edited copy signed by `keys`."""
    join = created.personal[email]
    claims = unverified(join)
    edit(claims)
    url = join.url.split("?", 1)[0] + "?jwt=" + tokens.mint(keys, claims)
    personal = {**created.personal, email: replace(join, url=url)}
    return replace(created, personal=personal)


def assert_no_secrets(text: str, created: ProvisionedMeeting) -> None:
    for join in all_links(created):
        assert token_of(join) not in text
        assert join.url not in text
    assert "http" not in text
    assert "@" not in text


class TestVerify:
    async def test_good_meeting_is_confirmed(self, provider: JitsiProvider) -> None:
        spec = make_spec(settings=make_settings(invitee_domains=("example.com", "partner.org")))
        created = await provider.create(spec, idempotency_key="k")
        observed = await provider.verify(spec, created)
        assert observed.mismatched == {}
        assert observed.confirmed == JitsiProvider.capabilities

    async def test_rs256_meeting_is_confirmed(self, rs256_config: JitsiConfig) -> None:
        provider = JitsiProvider(rs256_config, clock=clock)
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        observed = await provider.verify(spec, created)
        assert observed.mismatched == {}
        assert observed.confirmed == created.enforced

    async def test_verify_does_not_depend_on_when_it_runs(self) -> None:
        later = START + timedelta(days=30)
        creator = JitsiProvider(hs256_config(), clock=clock)
        checker = JitsiProvider(hs256_config(), clock=lambda: later)
        spec = make_spec()
        created = await creator.create(spec, idempotency_key="k")
        assert (await checker.verify(spec, created)).mismatched == {}

    async def test_invitee_token_with_moderator_rights(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")

        def promote(claims: dict[str, Any]) -> None:
            claims["context"]["user"]["moderator"] = True
            claims["context"]["user"]["affiliation"] = "owner"

        tampered = swap(created, "ann@example.com", promote, tokens.load_keys(hs256_config()))
        observed = await provider.verify(spec, tampered)
        assert Control.PER_INVITEE_LINKS in observed.mismatched
        assert Control.PER_INVITEE_LINKS not in observed.confirmed
        assert "moderator" in observed.mismatched[Control.PER_INVITEE_LINKS]
        assert_no_secrets(observed.mismatched[Control.PER_INVITEE_LINKS], tampered)

    async def test_token_signed_with_another_key(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        forger = tokens.load_keys(hs256_config(app_secret="f" * 40))
        tampered = swap(created, "bob@partner.org", lambda claims: None, forger)
        observed = await provider.verify(spec, tampered)
        assert set(observed.mismatched) == {Control.PER_INVITEE_LINKS, Control.SIGN_IN_REQUIRED}
        assert observed.confirmed == {Control.MAX_DURATION}
        for text in observed.mismatched.values():
            assert_no_secrets(text, tampered)

    async def test_extended_expiry(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")

        def extend(claims: dict[str, Any]) -> None:
            claims["exp"] += 3600

        keys = tokens.load_keys(hs256_config())
        observed = await provider.verify(spec, swap(created, "ann@example.com", extend, keys))
        assert set(observed.mismatched) == {Control.MAX_DURATION}

    async def test_links_swapped_between_invitees(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        ann, bob = created.personal["ann@example.com"], created.personal["bob@partner.org"]
        swapped = replace(created, personal={"ann@example.com": bob, "bob@partner.org": ann})
        observed = await provider.verify(spec, swapped)
        assert "someone else (x2)" in observed.mismatched[Control.PER_INVITEE_LINKS]

    async def test_missing_shared_and_duplicate_links(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        broken = replace(
            created,
            shared=created.host,
            personal={"ann@example.com": created.personal["ann@example.com"]},
        )
        observed = await provider.verify(spec, broken)
        text = observed.mismatched[Control.PER_INVITEE_LINKS]
        assert "without a personal link" in text
        assert "shared link" in text

    async def test_link_to_another_room(self, provider: JitsiProvider) -> None:
        spec = make_spec()
        created = await provider.create(spec, idempotency_key="k")
        other = await provider.create(make_spec(meeting_id="mtg_02"), idempotency_key="k2")
        mixed = replace(
            created,
            personal={**created.personal, "ann@example.com": other.personal["ann@example.com"]},
        )
        observed = await provider.verify(spec, mixed)
        assert "not for this room" in observed.mismatched[Control.PER_INVITEE_LINKS]
        assert_no_secrets(observed.mismatched[Control.PER_INVITEE_LINKS], mixed)
