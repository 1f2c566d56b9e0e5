"""Browser sign-in against the real OpenID provider, driven headless with httpx.

Every hop is followed by hand, so the test sees what a browser sees: the PKCE and nonce
parameters on the way out, the provider's login form, the session cookie on the way back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import httpx
import pytest

from tests.e2e.flows import FORM_ACTION, HIDDEN, Walk, csrf_from, follow, sign_in

NEXT_OFFSITE = "https://elsewhere.example"


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15.0) as client:
        yield client


def _form(topic: str, csrf: str | None) -> dict[str, str]:
    start = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    form = {
        "topic": topic,
        "start": start,
        "duration_minutes": "30",
        "timezone": "Europe/Berlin",
        "invitees": "Ana Lima <ana@example.com>\nbo@partner.example.org",
        "provider": "jitsi",
        "settings.chat": "off",
    }
    if csrf is not None:
        form["csrf_token"] = csrf
    return form


def request_meeting(browser: httpx.Client, app_url: str, topic: str) -> str:
    """Submit the request form; returns the new meeting's id."""
    page = browser.get(f"{app_url}/meetings/new")
    assert page.status_code == 200
    response = browser.post(f"{app_url}/meetings/new", data=_form(topic, csrf_from(page.text)))
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    assert location.startswith("/meetings/")
    return location.rsplit("/", 1)[1]


def meeting_count(browser: httpx.Client, app_url: str) -> int:
    response = browser.get(f"{app_url}/api/v1/meetings")
    assert response.status_code == 200
    return len(response.json()["data"])


class TestCodeFlow:
    def test_sign_in_request_list_and_sign_out(self, browser: httpx.Client, app_url: str) -> None:
        walk = sign_in(browser, app_url, "dana")
        authorize = walk.query_of(walk.visited[0].split("?")[0])
        assert authorize["code_challenge_method"] == ["S256"]
        assert authorize["code_challenge"] and authorize["nonce"] and authorize["state"]
        assert "openid" in authorize["scope"][0].split()
        assert walk.response is not None and walk.response.status_code == 200
        assert str(walk.response.url) == f"{app_url}/meetings"

        meeting_id = request_meeting(browser, app_url, "Planning via the form")
        detail = browser.get(f"{app_url}/meetings/{meeting_id}")
        assert detail.status_code == 200
        assert 'id="join-passcode"' in detail.text and "data-copy" in detail.text
        assert "Planning via the form" in browser.get(f"{app_url}/meetings").text

        home = browser.get(f"{app_url}/meetings")
        out = browser.post(f"{app_url}/auth/logout", data={"csrf_token": csrf_from(home.text)})
        assert out.status_code == 303
        end_session = out.headers["location"]
        assert "id_token_hint=" in end_session and "post_logout_redirect_uri=" in end_session
        walk = Walk()
        follow(browser, out, walk)
        confirm = walk.response
        assert confirm is not None and confirm.status_code == 200
        action = FORM_ACTION.search(confirm.text)
        assert action is not None
        fields = dict(HIDDEN.findall(confirm.text)) | {"logout": "yes"}
        follow(browser, browser.post(urljoin(str(confirm.url), action.group(1)), data=fields), walk)
        assert walk.visited[-1] == f"{app_url}/auth/signed-out"
        after = browser.get(f"{app_url}/meetings")
        assert after.status_code == 303 and after.headers["location"].startswith("/auth/login")

    def test_session_cookie_attributes(self, browser: httpx.Client, app_url: str) -> None:
        browser.get(f"{app_url}/auth/start", params={"next": "/meetings"})
        started = browser.get(f"{app_url}/auth/start", params={"next": "/meetings"})
        header = started.headers["set-cookie"].lower()
        assert header.startswith("provisioner_session=")
        assert "httponly" in header and "samesite=lax" in header and "max-age=" in header

    def test_api_accepts_the_session_but_needs_csrf_to_write(
        self, browser: httpx.Client, app_url: str
    ) -> None:
        sign_in(browser, app_url, "dana")
        body = {
            "topic": "From the browser's API call",
            "start": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "duration_minutes": 30,
            "timezone": "UTC",
            "invitees": [{"email": "ana@example.com", "name": "Ana"}],
        }
        refused = browser.post(f"{app_url}/api/v1/meetings", json=body)
        assert refused.status_code == 403
        assert meeting_count(browser, app_url) == 0
        csrf = csrf_from(browser.get(f"{app_url}/meetings").text)
        created = browser.post(
            f"{app_url}/api/v1/meetings", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert created.status_code == 201
        assert meeting_count(browser, app_url) == 1


class TestRefusals:
    def test_replayed_state_is_refused(self, browser: httpx.Client, app_url: str) -> None:
        walk = sign_in(browser, app_url, "dana")
        callback = next(u for u in walk.visited if u.startswith(f"{app_url}/auth/callback"))
        with httpx.Client(timeout=15.0) as stranger:
            assert stranger.get(callback).status_code == 403
            assert stranger.get(f"{app_url}/meetings").status_code == 303
        assert browser.get(callback).status_code == 403  # the same browser, again

    def test_form_post_without_csrf_token_creates_nothing(
        self, browser: httpx.Client, app_url: str
    ) -> None:
        sign_in(browser, app_url, "dana")
        response = browser.post(f"{app_url}/meetings/new", data=_form("No token", None))
        assert response.status_code == 403
        wrong = browser.post(f"{app_url}/meetings/new", data=_form("Bad token", "forged"))
        assert wrong.status_code == 403
        assert meeting_count(browser, app_url) == 0

    @pytest.mark.parametrize(
        "target", [NEXT_OFFSITE, "//elsewhere.example", "/\\elsewhere.example", "javascript:x"]
    )
    def test_offsite_next_is_refused(
        self, browser: httpx.Client, app_url: str, target: str
    ) -> None:
        for path in ("/auth/login", "/auth/start"):
            response = browser.get(f"{app_url}{path}", params={"next": target})
            assert response.status_code == 403
            assert "elsewhere" not in response.headers.get("location", "")

    def test_next_is_honoured_for_local_paths(self, browser: httpx.Client, app_url: str) -> None:
        walk = sign_in(browser, app_url, "dana", next_path="/meetings/new")
        assert walk.response is not None
        assert str(walk.response.url) == f"{app_url}/meetings/new"

    def test_user_without_groups_gets_no_role(self, browser: httpx.Client, app_url: str) -> None:
        walk = sign_in(browser, app_url, "nora")
        assert walk.response is not None and walk.response.status_code == 403
        assert browser.get(f"{app_url}/api/v1/meetings").status_code == 403
        assert browser.get(f"{app_url}/admin/audit").status_code == 403

    def test_employee_cannot_read_or_change_anothers_meeting(
        self, browser: httpx.Client, app_url: str
    ) -> None:
        sign_in(browser, app_url, "dana")
        meeting_id = request_meeting(browser, app_url, "Dana's private meeting")
        with httpx.Client(timeout=15.0) as erin:
            sign_in(erin, app_url, "erin")
            csrf = csrf_from(erin.get(f"{app_url}/meetings").text)
            assert erin.get(f"{app_url}/meetings/{meeting_id}").status_code == 404
            assert erin.get(f"{app_url}/api/v1/meetings/{meeting_id}").status_code == 404
            cancel = erin.post(f"{app_url}/meetings/{meeting_id}/cancel", data={"csrf_token": csrf})
            assert cancel.status_code == 404
            api_cancel = erin.delete(
                f"{app_url}/api/v1/meetings/{meeting_id}", headers={"X-CSRF-Token": csrf}
            )
            assert api_cancel.status_code == 404
            assert "Dana's private meeting" not in erin.get(f"{app_url}/meetings").text
        assert "cancelled" not in browser.get(f"{app_url}/meetings/{meeting_id}").text


class TestAdmin:
    def test_it_admin_sees_metadata_policy_and_audit(
        self, browser: httpx.Client, app_url: str
    ) -> None:
        sign_in(browser, app_url, "dana")
        meeting_id = request_meeting(browser, app_url, "Seen by IT")
        detail = browser.get(f"{app_url}/api/v1/meetings/{meeting_id}").json()
        passcode = detail["host_join"]["passcode"]
        assert browser.get(f"{app_url}/admin/meetings").status_code == 403
        with httpx.Client(timeout=15.0) as ivan:
            walk = sign_in(ivan, app_url, "ivan", next_path="/admin/meetings")
            assert walk.response is not None and walk.response.status_code == 200
            overview = walk.response.text
            assert "Seen by IT" in overview and "dana@example.com" in overview
            assert passcode not in overview
            listed = ivan.get(f"{app_url}/api/v1/admin/meetings").json()["data"]
            assert [m["id"] for m in listed] == [meeting_id]
            assert passcode not in str(listed)
            assert ivan.get(f"{app_url}/meetings/{meeting_id}").status_code == 403
            assert ivan.get(f"{app_url}/api/v1/meetings/{meeting_id}").status_code == 403
            audit = ivan.get(f"{app_url}/admin/audit", params={"target_id": meeting_id})
            assert audit.status_code == 200 and "meeting.requested" in audit.text
            api_audit = ivan.get(
                f"{app_url}/api/v1/admin/audit", params={"action": "meeting.req"}
            ).json()["data"]
            assert {e["action"] for e in api_audit} == {"meeting.requested"}
            policy = ivan.get(f"{app_url}/admin/policy")
            assert policy.status_code == 200 and "executives" in policy.text


class TestFormErrors:
    def test_errors_are_shown_next_to_their_field(
        self, browser: httpx.Client, app_url: str
    ) -> None:
        sign_in(browser, app_url, "dana")
        csrf = csrf_from(browser.get(f"{app_url}/meetings/new").text)
        form = _form("Loosening a lock", csrf) | {"settings.waiting_room": "false"}
        response = browser.post(f"{app_url}/meetings/new", data=form)
        assert response.status_code == 422
        assert 'id="settings-waiting_room-error"' in response.text
        past = _form("In the past", csrf) | {"start": "2001-01-01T10:00"}
        response = browser.post(f"{app_url}/meetings/new", data=past)
        assert response.status_code == 422 and 'id="start-error"' in response.text
        assert meeting_count(browser, app_url) == 0
