"""The gateway's OpenID Connect login against a real provider on loopback (tests/oidc_idp.py).

The "browser" is httpx GETting the authorization URL without following the redirect
back to the gateway: the Location header's query is what the gateway's callback gets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest

from baton.errors import BatonUsageError
from baton.gateway.oidc import LoginState, OidcClient, OidcError, OidcIdentity, OidcSettings
from tests.oidc_idp import TestIdentityProvider

REDIRECT = "http://localhost:8300/login/callback"


@pytest.fixture
async def idp() -> AsyncIterator[TestIdentityProvider]:
    async with TestIdentityProvider(redirect_uri=REDIRECT) as provider:
        yield provider


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def make_client(idp: TestIdentityProvider, http: httpx.AsyncClient, **overrides: Any) -> OidcClient:
    settings = OidcSettings(
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        redirect_uri=REDIRECT,
        access_audience=idp.access_audience,
    )
    return OidcClient(dataclasses.replace(settings, **overrides), http)


async def browse(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """What the provider redirects the browser back to the gateway's callback with."""
    response = await http.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return dict(parse_qsl(urlsplit(location).query))


async def login(client: OidcClient, http: httpx.AsyncClient, **tamper: str) -> OidcIdentity:
    url, state = await client.begin()
    params = await browse(http, url)
    return await client.finish(params, dataclasses.replace(state, **tamper))


async def refused(client: OidcClient, http: httpx.AsyncClient, **tamper: str) -> str:
    with pytest.raises(OidcError) as caught:
        await login(client, http, **tamper)
    return caught.value.reason


async def test_a_login_round_trip_names_the_user(idp: TestIdentityProvider, http: httpx.AsyncClient) -> None:
    idp.next_user = {"preferred_username": "Dana", "name": "Dana Kim", "sub": "u-1"}
    client = make_client(idp, http)
    url, state = await client.begin()
    query = dict(parse_qsl(urlsplit(url).query))
    assert url.startswith(f"{idp.issuer}/authorize?")
    expected = {"response_type": "code", "code_challenge_method": "S256", "client_id": idp.client_id}
    assert query.items() >= (expected | {"redirect_uri": REDIRECT, "state": state.state}).items()
    assert query["nonce"] == state.nonce
    assert len(state.verifier) >= 43
    assert LoginState.from_dict(state.to_dict()) == state
    assert LoginState.from_dict({"state": "s", "nonce": 3}) is None
    identity = await client.finish(await browse(http, url), state)
    assert identity == OidcIdentity(user_id="dana", name="Dana Kim", roles=None, subject="u-1")
    # a public client (no secret) logs in with PKCE alone
    idp.client_secret = None
    assert (await login(make_client(idp, http, client_secret=None), http)).user_id == "dana"


async def test_the_user_falls_back_to_email_then_sub(
    idp: TestIdentityProvider, http: httpx.AsyncClient
) -> None:
    idp.next_user = {"email": "Ops@Example.com", "email_verified": True, "sub": "u-2"}
    assert (await login(make_client(idp, http), http)).user_id == "ops@example.com"
    for unverified in ({"email_verified": False}, {}):  # an address not stated verified is not used
        idp.next_user = {"email": "ops@example.com", "sub": "u-3", **unverified}
        identity = await login(make_client(idp, http), http)
        assert (identity.user_id, identity.name) == ("u-3", "u-3")
    idp.next_user = {"preferred_username": "da\u200bna"}
    assert "is not a usable Baton user id" in await refused(make_client(idp, http), http)


async def test_roles_come_from_the_configured_claim(
    idp: TestIdentityProvider, http: httpx.AsyncClient
) -> None:
    idp.next_user = {"preferred_username": "dana", "roles": ["support-manager", "approver"]}
    assert (await login(make_client(idp, http, roles_claim="roles"), http)).roles == (
        "support-manager",
        "approver",
    )
    idp.next_user = {"preferred_username": "dana", "realm_access": {"roles": ["finance"]}}
    client = make_client(idp, http, roles_claim="realm_access.roles")
    assert (await login(client, http)).roles == ("finance",)
    idp.next_user = {"preferred_username": "dana"}
    assert (await login(client, http)).roles == ()
    idp.next_user = {"preferred_username": "dana", "realm_access": {"roles": "finance"}}
    assert (
        await refused(client, http) == "the ID token's 'realm_access.roles' claim is not a list of role names"
    )


@pytest.mark.parametrize(
    ("knob", "value", "reason"),
    [
        ("id_token_audience", "someone-else", "the ID token's audience is not this gateway"),
        ("id_token_lifetime", -120, "the ID token has expired"),
        (
            "issuer_override",
            "http://evil.example",
            "the ID token's issuer is not the configured identity provider",
        ),
        ("sign_with_other_key", True, "the ID token's signature does not verify"),
    ],
)
async def test_a_bad_id_token_is_refused(
    idp: TestIdentityProvider, http: httpx.AsyncClient, knob: str, value: object, reason: str
) -> None:
    setattr(idp, knob, value)
    assert await refused(make_client(idp, http), http) == reason


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_unsigned_and_hmac_tokens_are_refused(
    idp: TestIdentityProvider, http: httpx.AsyncClient, alg: str
) -> None:
    idp.id_token_alg = alg
    assert (await refused(make_client(idp, http), http)).startswith(
        "the ID token's signing algorithm is not allowed (only RS256"
    )


async def test_a_token_for_several_audiences_must_be_for_this_client(
    idp: TestIdentityProvider, http: httpx.AsyncClient
) -> None:
    idp.id_token_audience = [idp.client_id, "other-app"]
    assert (await login(make_client(idp, http), http)).user_id == "dana"  # azp is this client
    idp.extra_id_claims = {"azp": "other-app"}
    assert await refused(make_client(idp, http), http) == (
        "the ID token was issued to another client (its 'azp' is not this gateway)"
    )


async def test_a_callback_from_another_login_is_refused(
    idp: TestIdentityProvider, http: httpx.AsyncClient
) -> None:
    client = make_client(idp, http)
    assert (
        await refused(client, http, state="forged")
        == "the login's state does not match: start the login again"
    )
    assert await refused(client, http, nonce="replayed") == (
        "the ID token's nonce does not match this login: start the login again"
    )
    assert await refused(client, http, verifier="v" * 43) == (
        "the identity provider refused the code exchange: invalid_grant"
    )
    url, state = await client.begin()
    params = await browse(http, url)
    await client.finish(params, state)
    with pytest.raises(OidcError, match="refused the code exchange: invalid_grant"):  # codes are single use
        await client.finish(params, state)
    with pytest.raises(OidcError, match="came from another identity provider"):
        await client.finish(params | {"iss": "http://evil.example"}, state)


async def test_the_provider_refusing_is_reported(idp: TestIdentityProvider, http: httpx.AsyncClient) -> None:
    idp.next_user = None
    assert (
        await refused(make_client(idp, http), http)
        == "the identity provider refused the login: access_denied"
    )
    client = make_client(idp, http, client_secret="wrong")
    idp.next_user = {"preferred_username": "dana"}
    assert await refused(client, http) == "the identity provider refused the code exchange: invalid_client"


async def test_discovery_must_name_the_configured_issuer(
    idp: TestIdentityProvider, http: httpx.AsyncClient
) -> None:
    with pytest.raises(OidcError, match="discovery document names another issuer"):
        await make_client(idp, http, issuer=idp.issuer + "/").begin()


async def test_a_rotated_key_is_fetched_once(idp: TestIdentityProvider, http: httpx.AsyncClient) -> None:
    client = make_client(idp, http)
    await login(client, http)
    assert idp.jwks_requests == 1
    idp.rotate_key(keep_old=False)
    assert (await login(client, http)).user_id == "dana"
    assert idp.jwks_requests == 2
    idp.rotate_key(keep_old=False)  # a second unknown key within the minute: no new fetch
    assert (
        await refused(client, http)
        == "the ID token is signed with a key the identity provider does not publish"
    )
    assert idp.jwks_requests == 2


async def test_access_tokens_for_the_codec(idp: TestIdentityProvider, http: httpx.AsyncClient) -> None:
    client = make_client(idp, http, roles_claim="groups")
    token = idp.issue_access_token({"sub": "u-9", "preferred_username": "Lee", "groups": ["ops"]})
    assert await client.verify_access_token(token) == OidcIdentity("lee", "lee", ("ops",), "u-9")
    assert idp.jwks_requests == 1
    wrong = idp.issue_access_token({"preferred_username": "lee"}, audience="someone-else")
    with pytest.raises(OidcError, match=r"^the access token's audience is not this gateway$"):
        await client.verify_access_token(wrong)
    expired = idp.issue_access_token({"preferred_username": "lee"}, lifetime=-120)
    with pytest.raises(OidcError, match=r"^the access token has expired$"):
        await client.verify_access_token(expired)
    with pytest.raises(OidcError, match=r"^the access token is not a JWT \(opaque"):
        await client.verify_access_token("2YotnFZFEjr1zCsicMWpAA")
    forged = jwt.encode(
        {"sub": "x", "aud": "temporal-ui", "iss": idp.issuer, "exp": 2**31}, "k" * 32, "HS256"
    )
    with pytest.raises(OidcError, match=r"^the access token's signing algorithm is not allowed"):
        await client.verify_access_token(forged)


def test_settings_from_the_environment(tmp_path: Path) -> None:
    assert OidcSettings.from_env({}, redirect_uri=REDIRECT) is None
    with pytest.raises(BatonUsageError, match="BATON_OIDC_CLIENT_ID"):
        OidcSettings.from_env({"BATON_OIDC_ISSUER": "https://idp.example"}, redirect_uri=REDIRECT)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    env = {
        "BATON_OIDC_ISSUER": "https://idp.example/realms/x",
        "BATON_OIDC_CLIENT_ID": "baton",
        "BATON_OIDC_CLIENT_SECRET_FILE": str(secret),
        "BATON_OIDC_ROLES_CLAIM": "realm_access.roles",
        "BATON_OIDC_ACCESS_AUDIENCE": "temporal-ui",
    }
    settings = OidcSettings.from_env(env, redirect_uri=REDIRECT)
    assert settings == OidcSettings(
        "https://idp.example/realms/x",
        "baton",
        "s3cret",
        REDIRECT,
        roles_claim="realm_access.roles",
        access_audience="temporal-ui",
    )
    assert "s3cret" not in repr(settings)
    with pytest.raises(BatonUsageError, match="BATON_OIDC_CLIENT_SECRET_FILE"):
        OidcSettings.from_env(
            env | {"BATON_OIDC_CLIENT_SECRET_FILE": str(tmp_path / "nope")}, redirect_uri=REDIRECT
        )
