"""The redaction backstop: secret keys dropped, token-shaped strings scrubbed."""

from __future__ import annotations

import io
import logging

import structlog

from provisioner.logs import configure_logging
from provisioner.redaction import REDACTED, is_secret_key, redact, scrub_text

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"


class TestRedact:
    def test_secret_keys_are_dropped_at_any_depth(self) -> None:
        data = {
            "meeting": {"id": "m1", "passcode": "p", "join_url": "u"},
            "items": [{"Authorization": "Bearer x"}],
            "count": 3,
        }
        assert redact(data) == {
            "meeting": {"id": "m1", "passcode": REDACTED, "join_url": REDACTED},
            "items": [{"Authorization": REDACTED}],
            "count": 3,
        }

    def test_token_shapes_are_scrubbed_from_text(self) -> None:
        text = f"join https://meet.example.com/room?jwt={JWT}&x=1 with Bearer abc.def"
        scrubbed = scrub_text(text)
        assert JWT not in scrubbed and "abc.def" not in scrubbed
        assert scrubbed.startswith("join https://meet.example.com/room?")
        assert scrub_text(f"token {JWT} here") == f"token {REDACTED} here"


class TestLogProcessor:
    def test_log_lines_never_carry_secrets(self) -> None:
        stream = io.StringIO()
        configure_logging(level="INFO", fmt="json", stream=stream)
        try:
            log = structlog.get_logger("test")
            log.info("test.logged", passcode="hunter2", note=f"link ?jwt={JWT}")
            logging.getLogger("stdlib").warning("header Bearer %s", "sekrit-token")
        finally:
            logging.getLogger().handlers.clear()
        output = stream.getvalue()
        assert "hunter2" not in output and JWT not in output
        assert "sekrit-token" not in output
        assert "test.logged" in output


class TestJoinQuerySecrets:
    def test_every_query_secret_a_notice_refuses_is_scrubbed(self) -> None:
        from provisioner.delivery.notices import _SECRET_QUERY

        for key in ("pwd", "PWD", "tk", "token", "passcode", "password", "jwt"):
            text = f"see https://zoom.us/j/1?a=1&{key}=s3cr3tvalue and https://x.test/?{key}=v2"
            scrubbed = scrub_text(text)
            assert "s3cr3tvalue" not in scrubbed and "v2" not in scrubbed, key
            assert not _SECRET_QUERY.search(scrubbed), scrubbed
            assert REDACTED in scrubbed

    def test_ordinary_words_are_left_alone(self) -> None:
        text = "the token ring and a pwd of bread; tk=1 outside a query"
        assert scrub_text(text) == text


class TestSecretKeyNames:
    def test_a_google_service_account_key_is_a_secret(self) -> None:
        # It holds an RSA private key: never logged, and refused as a plain value in
        # production like every other secret.
        assert is_secret_key("service_account_key")
        assert not is_secret_key("service_account_file")


class TestNoisyLibraries:
    def test_clients_that_print_bodies_stay_quiet_at_debug(self) -> None:
        stream = io.StringIO()
        configure_logging(level="DEBUG", fmt="json", stream=stream)
        try:
            # botocore prints a Secrets Manager answer (the secret) at DEBUG.
            for name in ("botocore", "boto3", "urllib3", "requests", "hvac", "httpx"):
                assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
                logging.getLogger(f"{name}.parsers").debug("SecretString: hunter2-secret")
        finally:
            logging.getLogger().handlers.clear()
        assert "hunter2-secret" not in stream.getvalue()
