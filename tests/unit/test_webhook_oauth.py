"""Incode's OAuth webhook mode: our token endpoint (RFC 6749 client credentials, HTTP Basic) and
``/webhooks/incode`` accepting the bearer tokens it issued, with a real Redis behind both."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from redis import Redis

from config.settings import ConfigError, Settings
from connectors.registry import SETTINGS, load_settings
from sandbox import incode as incode_sim
from sandbox.common import serve
from tests.conftest import SECRETS, json_body, queued, sent_verification, settings_data
from webhooks import oauth
from webhooks.app import create_app
from webhooks.oauth import binding, client_matches
from worker.dispatch import CHECK_RESULT

CLIENT_ID = "incode-hooks"
CLIENT_SECRET = "hook-client-secret/+=:x"  # characters that form-encoding changes
TOKEN_PATH = "/webhooks/incode/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def oauth_settings(**incode: Any) -> Settings:
    data = settings_data()
    data["incode"].update(
        {
            "webhook_oauth_client_id": CLIENT_ID,
            "webhook_oauth_client_secret": CLIENT_SECRET,
            "webhook_oauth_token_ttl_seconds": 600,
            **incode,
        }
    )
    return SETTINGS(**data)


@pytest.fixture
def settings() -> Settings:
    return oauth_settings()


@pytest.fixture
def app(settings: Settings, redis: Redis[str]) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def session(settings: Settings, redis: Redis[str]) -> str:
    return sent_verification(redis, settings)


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def ask_token(client: FlaskClient, authorization: str | None = None, **kw: Any) -> Any:
    headers = {**FORM, **kw.pop("headers", {})}
    if authorization is not None:
        headers["Authorization"] = authorization
    data = kw.pop("data", "grant_type=client_credentials")
    return client.post(TOKEN_PATH, data=data, headers=headers)


def token_keys(redis: Redis[str]) -> list[str]:
    return list(redis.scan_iter("dgtest:wtok:*"))


def hook(client: FlaskClient, headers: dict[str, str]) -> Any:
    payload = {"eventType": "SESSION_SUCCEEDED", "interviewId": "iv-1"}
    return client.post("/webhooks/incode", json=payload, headers=headers)


# -- settings ------------------------------------------------------------------------------


def test_oauth_mode_is_off_unless_configured() -> None:
    assert not SETTINGS(**settings_data()).incode.webhook_oauth
    config = oauth_settings().incode
    assert config.webhook_oauth and config.webhook_oauth_token_ttl_seconds == 600


@pytest.mark.parametrize(
    ("incode", "message"),
    [
        ({"webhook_oauth_client_id": "x"}, "must be set together"),
        ({"webhook_oauth_client_secret": "s" * 20}, "must be set together"),
        (
            {"webhook_oauth_client_id": "x", "webhook_oauth_client_secret": "short-secret"},
            "incode.webhook_oauth_client_secret: Value error, must be at least 16 characters",
        ),
        (
            {"webhook_oauth_client_id": "x", "webhook_oauth_client_secret": "s" * 20,
             "webhook_oauth_token_ttl_seconds": 5},
            "webhook_oauth_token_ttl_seconds",
        ),
    ],
)  # fmt: skip
def test_half_or_weak_oauth_configuration_stops_start_up(
    incode: dict[str, Any], message: str
) -> None:
    data = settings_data()
    data["incode"].update(incode)
    with pytest.raises(ConfigError) as refused:
        load_settings(**data)
    assert message in str(refused.value)
    assert "short-secret" not in str(refused.value)


def test_an_empty_client_secret_never_authenticates() -> None:
    """Settings refuse it; the check refuses one that reaches it anyway (built past validation)."""
    blank = oauth_settings().incode.model_copy(
        update={"webhook_oauth_client_secret": SecretStr("")}
    )
    assert not client_matches((CLIENT_ID, ""), blank)
    assert not client_matches(("", ""), blank)
    assert client_matches((CLIENT_ID, CLIENT_SECRET), oauth_settings().incode)


# -- the token endpoint --------------------------------------------------------------------


def test_given_good_client_credentials_then_a_token_is_issued_and_stored_hashed(
    client: FlaskClient, redis: Redis[str]
) -> None:
    resp = ask_token(client, basic())
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    token = body["access_token"]
    assert isinstance(token, str) and len(token) >= 40
    [key] = token_keys(redis)
    assert key == f"dgtest:wtok:{hashlib.sha256(token.encode()).hexdigest()}"
    stored = redis.get(key)
    assert stored == binding(oauth_settings().incode, CLIENT_SECRET)
    assert stored is not None and stored.startswith(f"{CLIENT_ID} ") and CLIENT_SECRET not in stored
    assert 0 < redis.ttl(key) <= 600
    assert json_body(ask_token(client, basic()))["access_token"] != token  # a fresh one each time


def test_rfc_6749_form_encoded_basic_credentials_are_accepted(client: FlaskClient) -> None:
    encoded = basic(quote_plus(CLIENT_ID), quote_plus(CLIENT_SECRET))
    assert encoded != basic()
    assert ask_token(client, encoded).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        basic(secret="wrong-secret-but-long"),
        basic(client_id="someone-else"),
        basic(secret=CLIENT_SECRET + "x"),
        basic(secret=CLIENT_SECRET[:-1]),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
        f"Bearer {CLIENT_SECRET}",
    ],
)
def test_given_bad_client_credentials_then_401_invalid_client_and_no_token(
    client: FlaskClient, redis: Redis[str], authorization: str | None
) -> None:
    resp = ask_token(client, authorization)
    assert resp.status_code == 401
    assert json_body(resp)["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert resp.headers["Cache-Control"] == "no-store"
    assert token_keys(redis) == []


@pytest.mark.parametrize(
    ("data", "headers", "error"),
    [
        ("grant_type=password&username=a&password=b", FORM, "unsupported_grant_type"),
        ("grant_type=authorization_code&code=x", FORM, "unsupported_grant_type"),
        ("", FORM, "invalid_request"),
        ("scope=openid", FORM, "invalid_request"),
        ("grant_type=client_credentials&grant_type=client_credentials", FORM, "invalid_request"),
        ('{"grant_type": "client_credentials"}', {"Content-Type": "application/json"},
         "invalid_request"),
    ],
)  # fmt: skip
def test_given_an_authenticated_but_bad_request_then_400_with_the_rfc_error(
    client: FlaskClient, redis: Redis[str], data: str, headers: dict[str, str], error: str
) -> None:
    resp = client.post(TOKEN_PATH, data=data, headers={**headers, "Authorization": basic()})
    assert resp.status_code == 400
    assert json_body(resp)["error"] == error and json_body(resp)["error_description"]
    assert token_keys(redis) == []


def test_given_no_oauth_configured_then_no_token_endpoint(redis: Redis[str]) -> None:
    client = create_app(SETTINGS(**settings_data())).test_client()
    resp = ask_token(client, basic())
    assert resp.status_code == 404
    assert token_keys(redis) == []


def test_only_post_is_served(client: FlaskClient) -> None:
    assert client.get(TOKEN_PATH).status_code == 405


# -- bearer tokens on /webhooks/incode -----------------------------------------------------


def test_given_an_issued_token_then_a_bearer_webhook_is_accepted(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    token = json_body(ask_token(client, basic()))["access_token"]
    resp = hook(client, {"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200 and resp.json == {"status": "accepted"}
    assert queued(redis) == [(CHECK_RESULT, [session, "SESSION_SUCCEEDED", None])]


def test_in_oauth_mode_the_static_secret_header_still_works(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    resp = hook(client, {"x-incode-secret": SECRETS["incode_webhook"]})
    assert resp.status_code == 200
    assert len(queued(redis)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer made-up-token"},
        {"Authorization": "Bearer "},
        {"Authorization": basic()},  # client credentials are not a webhook credential
        {"Authorization": f"Bearer {CLIENT_SECRET}"},
        {"x-incode-secret": "wrong"},
    ],
)
def test_given_no_valid_token_or_secret_then_401_and_nothing_queued(
    client: FlaskClient, redis: Redis[str], session: str, headers: dict[str, str]
) -> None:
    resp = hook(client, headers)
    assert resp.status_code == 401
    assert (
        "bearer token" in json_body(resp)["reason"]
        and "x-incode-secret" in json_body(resp)["reason"]
    )
    assert queued(redis) == []


def test_an_expired_token_is_refused(client: FlaskClient, redis: Redis[str], session: str) -> None:
    token = json_body(ask_token(client, basic()))["access_token"]
    for key in token_keys(redis):
        redis.delete(key)  # what its TTL does
    assert hook(client, {"Authorization": f"Bearer {token}"}).status_code == 401
    assert queued(redis) == []


def test_tokens_of_a_replaced_client_die_with_it(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    token = json_body(ask_token(client, basic()))["access_token"]
    replaced = create_app(oauth_settings(webhook_oauth_client_id="incode-hooks-2")).test_client()
    assert hook(replaced, {"Authorization": f"Bearer {token}"}).status_code == 401
    without_oauth = create_app(SETTINGS(**settings_data())).test_client()
    resp = hook(without_oauth, {"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "bearer" not in json_body(resp)["reason"]
    assert queued(redis) == []


def test_rotating_the_client_secret_kills_the_tokens_it_minted(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    """Finding 8: tokens used to be bound to the client id only, so they outlived a secret
    rotated because it leaked. Without the previous secret configured, Incode asks anew."""
    token = json_body(ask_token(client, basic()))["access_token"]
    rotated_secret = "a-brand-new-client-secret"
    rotated = create_app(oauth_settings(webhook_oauth_client_secret=rotated_secret)).test_client()
    assert hook(rotated, {"Authorization": f"Bearer {token}"}).status_code == 401
    assert queued(redis) == []
    fresh = json_body(ask_token(rotated, basic(secret=rotated_secret)))["access_token"]
    assert hook(rotated, {"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert hook(client, {"Authorization": f"Bearer {fresh}"}).status_code == 401  # and back


def test_during_a_rotation_the_previous_client_secret_and_its_tokens_are_accepted(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    old_token = json_body(ask_token(client, basic()))["access_token"]
    new_secret = "a-brand-new-client-secret"
    overlap = create_app(
        oauth_settings(
            webhook_oauth_client_secret=new_secret,
            webhook_oauth_client_previous_secret=CLIENT_SECRET,
        )
    ).test_client()
    assert hook(overlap, {"Authorization": f"Bearer {old_token}"}).status_code == 200
    from_old = json_body(ask_token(overlap, basic()))["access_token"]  # Incode not moved yet
    from_new = json_body(ask_token(overlap, basic(secret=new_secret)))["access_token"]
    assert ask_token(overlap, basic(secret="not-either-of-them-16")).status_code == 401
    # The overlap ends: only the new secret and the tokens it minted still work.
    after = create_app(oauth_settings(webhook_oauth_client_secret=new_secret)).test_client()
    assert ask_token(after, basic()).status_code == 401
    for token, status in ((old_token, 401), (from_old, 401), (from_new, 200)):
        assert hook(after, {"Authorization": f"Bearer {token}"}).status_code == status


def test_a_previous_client_secret_without_oauth_mode_stops_start_up() -> None:
    data = settings_data()
    data["incode"]["webhook_oauth_client_previous_secret"] = CLIENT_SECRET
    with pytest.raises(ValueError, match="webhook_oauth_client_previous_secret"):
        SETTINGS(**data)


def test_minting_beyond_the_live_cap_revokes_the_oldest_tokens(
    client: FlaskClient, redis: Redis[str], session: str
) -> None:
    cap = oauth.LIVE_TOKENS_PER_CLIENT
    tokens = [json_body(ask_token(client, basic()))["access_token"] for _ in range(cap + 2)]
    assert len(token_keys(redis)) == cap
    status = [
        hook(client, {"Authorization": f"Bearer {t}"}).status_code for t in tokens
    ]  # the first accepted delivery takes the dedupe key; later ones are duplicates (200)
    assert status == [401, 401] + [200] * cap
    [index] = redis.keys("dgtest:wtoks:*")
    assert redis.zcard(index) == cap and 0 < redis.ttl(index) <= 600


def test_the_token_endpoint_limits_mints_per_client(client: FlaskClient, redis: Redis[str]) -> None:
    for _ in range(oauth.MINTS_PER_CLIENT):
        assert ask_token(client, basic()).status_code == 200
    before = token_keys(redis)
    refused = ask_token(client, basic())
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= oauth.RATE_WINDOW_SECONDS
    assert (
        json_body(refused)["error"] == "temporarily_unavailable"
        and json_body(refused)["error_description"]
    )
    assert refused.headers["Cache-Control"] == "no-store"
    assert token_keys(redis) == before  # nothing minted


def test_failed_token_requests_are_limited_without_locking_the_right_client_out(
    client: FlaskClient, redis: Redis[str]
) -> None:
    for _ in range(oauth.FAILURES_PER_MINUTE):
        assert ask_token(client, basic(secret="a-guess-at-the-secret")).status_code == 401
    # Guessing is held off...
    refused = ask_token(client, basic(secret="another-guess-at-it"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert token_keys(redis) == []
    # ...and Incode, with the right credentials, still gets its token.
    assert ask_token(client, basic()).status_code == 200


# -- the Incode simulator in OAuth webhook mode, against the real endpoint -----------------


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    server = serve(app)
    yield server.url
    server.stop()


def test_the_incode_simulator_in_oauth_mode_gets_a_token_and_its_webhook_is_accepted(
    served: str, redis: Redis[str], session: str
) -> None:
    sim = incode_sim.create_app(
        incode_sim.IncodeSimConfig(
            employees=frozenset({"jane@acme.test"}),
            webhook_url=f"{served}/webhooks/incode",
            webhook_secret="not-what-deskgate-expects",  # so only the bearer can succeed
            webhook_oauth_url=f"{served}{TOKEN_PATH}",
            webhook_oauth_client_id=CLIENT_ID,
            webhook_oauth_client_secret=CLIENT_SECRET,
        )
    ).test_client()
    state: incode_sim.IncodeSim = sim.application.extensions["incode_sim"]
    state.sessions["iv-1"] = incode_sim.Session(
        interview_id="iv-1", login_hint="jane@acme.test", notification={"type": "EMAIL"},
        integration_reference="ref", link_validity_minutes=30, url="https://verify/x",
        created_at=1000,
    )  # fmt: skip
    deliveries = sim.post("/_sandbox/sessions/iv-1/complete", json={"outcome": "pass"}).json
    assert deliveries is not None
    assert [d.get("status") for d in deliveries["deliveries"]] == [200]
    assert len(token_keys(redis)) == 1
    assert [name for name, _ in queued(redis)] == [CHECK_RESULT]
