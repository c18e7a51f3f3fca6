"""Login through an external OAuth2 provider and invites, against a real provider on loopback.

The provider (tests/fixtures/oidc_provider.py) is Authlib's authorization server; the browser
is an httpx client that follows every redirect by hand, so each hop can be checked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import func, select, update

from api.app import create_app
from core.rate_limit import RedisRateLimiter
from core.runtime import Runtime
from models import AccessToken, AuthorizationRequest, User
from models.base import utcnow
from models.db import Database
from tests.conftest import Caller
from tests.fixtures.audit import assert_audited
from tests.fixtures.callers import MakeUser
from tests.fixtures.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    Client,
    OidcProvider,
    ProviderUser,
)
from tests.fixtures.server import free_port, serve

ALICE = ProviderUser(
    sub="alice-0001",
    username="alice",
    password="alice-password",
    email="alice@provider.example",
    name="Alice Example",
)
BOB = ProviderUser(
    sub="bob-0002",
    username="bob",
    password="bob-password",
    email="bob@provider.example",
    name="Bob Example",
)
CLI_PORT = 5177
CLI_REDIRECT = f"http://localhost:{CLI_PORT}/cb-client"


@dataclasses.dataclass
class Setup:
    """The running provider and the master's base URL."""

    provider: OidcProvider
    provider_url: str
    master_url: str


def master_url(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/")


def provider_config(provider_url: str, root_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "oauth2.client_id": CLIENT_ID,
        "oauth2.client_secret": CLIENT_SECRET,
        "oauth2.authorize_endpoint": f"{provider_url}/authorize",
        "oauth2.token_endpoint": f"{provider_url}/token",
        "oauth2.userinfo_endpoint": f"{provider_url}/userinfo",
        "oauth2.token_method": "post",
        "oauth2.token_post_content_type": "application/x-www-form-urlencoded",
        "oauth2.code_requires_basic_auth": False,
        "oauth2.userinfo_scope": "openid email profile",
        "oauth2.userinfo_user_id_jsonpath": "$.sub",
        "oauth2.userinfo_email_jsonpath": "$.email",
        "oauth2.userinfo_username_jsonpath": "$.preferred_username",
        "server.root_url": root_url,
        **extra,
    }


async def configure(
    client: httpx.AsyncClient, admin: Caller, provider_url: str, **extra: Any
) -> None:
    response = await client.patch(
        "/v1/config",
        headers=admin.headers,
        json=provider_config(provider_url, master_url(client), **extra),
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def provider(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[OidcProvider, str]]:
    """The provider, serving on loopback, with the master registered as its client."""
    # Authlib insists on HTTPS unless told this is a test over plain HTTP.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    state = OidcProvider(
        users=[ALICE, BOB],
        client=Client(CLIENT_ID, CLIENT_SECRET, [f"{master_url(client)}/cb"]),
    )
    async with serve(state.app()) as url:
        yield state, url


@pytest.fixture
async def setup(
    client: httpx.AsyncClient, admin: Caller, provider: tuple[OidcProvider, str]
) -> Setup:
    """The master configured to log users in through the provider."""
    state, url = provider
    await configure(client, admin, url)
    return Setup(provider=state, provider_url=url, master_url=master_url(client))


async def invite(
    client: httpx.AsyncClient, caller: Caller, email: str, **extra: str
) -> httpx.Response:
    return await client.post(
        "/oauth2/authorize",
        headers=caller.headers,
        json={"response_type": "invite", "email": email, **extra},
    )


async def start_login(client: httpx.AsyncClient, **params: str) -> str:
    """``GET /authenticate``: the provider URL the master sends the browser to."""
    response = await client.get("/authenticate", params=params)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def provider_login(
    authorize_url: str, user: ProviderUser = ALICE, decision: str = "approve"
) -> str:
    """The browser at the provider: load the login form, post it; returns the /cb URL."""
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(authorize_url)
        assert page.status_code == 200, page.text
        action = unescape(re.search(r'action="([^"]+)"', page.text)[1])  # type: ignore[index]
        answer = await browser.post(
            str(page.url.join(action)),
            data={"username": user.username, "password": user.password, "decision": decision},
        )
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def browser_flow(
    client: httpx.AsyncClient, user: ProviderUser = ALICE, **params: str
) -> httpx.Response:
    """/authenticate → provider login → the master's /cb response."""
    params.setdefault("redirect_uri", CLI_REDIRECT)
    callback = await provider_login(await start_login(client, **params), user)
    return await client.get(callback)


def code_from(location: str, redirect_uri: str = CLI_REDIRECT) -> str:
    assert location.startswith(redirect_uri + "?"), location
    return parse_qs(urlsplit(location).query)["code"][0]


async def counts(db: Database) -> tuple[int, int]:
    """(users, access tokens and codes) stored."""
    async with db.session() as session:
        users = await session.scalar(select(func.count()).select_from(User))
        tokens = await session.scalar(select(func.count()).select_from(AccessToken))
    return users or 0, tokens or 0


async def user_row(db: Database, email: str) -> User | None:
    async with db.session() as session:
        rows = await session.execute(select(User).where(User.email == email))
        return rows.scalar_one_or_none()


def oauth_error(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description}


# ------------------------------------------------------------------------------ the flow


async def test_invite_login_token_and_user(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    invited = await invite(client, admin, "alice@example.com")
    assert invited.status_code == 201, invited.text
    body = invited.json()
    code = body["invite_code"]
    assert re.fullmatch(r"[0-9a-f]{32}", code)
    assert body == {
        "email": "alice@example.com",
        "invite_code": code,
        "link": f"{setup.master_url}/authenticate?invite_code={code}",
    }
    await assert_audited(db, "user", "invite")

    authorize_url = await start_login(
        client, invite_code=code, redirect_uri=CLI_REDIRECT, expires_in="3600"
    )
    parts = urlsplit(authorize_url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{setup.provider_url}/authorize"
    assert query.pop("state")
    assert query == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": f"{setup.master_url}/cb",
        "scope": "openid email profile",
    }
    callback = await provider_login(authorize_url)
    assert callback.startswith(f"{setup.master_url}/cb?")
    finished = await client.get(callback)
    assert finished.status_code == 302, finished.text
    assert finished.headers["cache-control"] == "no-store"
    master_code = code_from(finished.headers["location"])

    token = await client.post(
        "/oauth2/token", data={"grant_type": "authorization_code", "code": master_code}
    )
    assert token.status_code == 201, token.text
    issued = token.json()
    assert issued["expires_in"] == 3600
    assert issued["scopes"] == "user"
    me = await client.get("/v1/user", headers={"Authorization": f"Bearer {issued['access_token']}"})
    assert me.status_code == 200
    assert me.json() == {
        "id": invited_id(await user_row(db, "alice@example.com")),
        "email": "alice@example.com",
        "name": "alice",
        "roles": [],
    }
    row = await user_row(db, "alice@example.com")
    assert row is not None and (row.external_id, row.invite_code) == (ALICE.sub, None)
    await assert_audited(db, "access_token", "login")

    # The invite is spent; the linked account now logs in without one.
    pending = await client.get("/v1/users/invites", headers=admin.headers)
    assert pending.json() == {"invites": []}
    again = await browser_flow(client)
    assert again.status_code == 302, again.text
    second = await client.post(
        "/oauth2/token",
        json={"grant_type": "authorization_code", "code": code_from(again.headers["location"])},
    )
    assert second.status_code == 201
    assert second.json()["user"]["email"] == "alice@example.com"
    assert second.json()["expires_in"] is None


def invited_id(user: User | None) -> str:
    assert user is not None
    return user.id


async def test_oauth2_authenticate_path_and_code_page(
    client: httpx.AsyncClient, setup: Setup, admin: Caller
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    response = await client.get("/oauth2/authenticate", params={"invite_code": code})
    assert response.status_code == 302
    # No redirect_uri: the login ends on the master's own /code page, code in the fragment.
    callback = await provider_login(response.headers["location"])
    finished = await client.get(callback)
    location = finished.headers["location"]
    assert finished.status_code == 302
    assert re.fullmatch(r"/code#code=[0-9a-f]{12}", location), location
    page = await client.get("/code")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert "location.hash" in page.text


async def test_basic_auth_at_the_token_endpoint(
    client: httpx.AsyncClient, admin: Caller, provider: tuple[OidcProvider, str]
) -> None:
    state, url = provider
    state.client.auth_method = "client_secret_basic"
    await configure(client, admin, url, **{"oauth2.code_requires_basic_auth": "true"})
    code = (await invite(client, admin, "bob@example.com")).json()["invite_code"]
    finished = await browser_flow(client, BOB, invite_code=code)
    assert finished.status_code == 302, finished.text
    code_from(finished.headers["location"])


async def test_default_jsonpaths_read_oidc_claims(
    client: httpx.AsyncClient, admin: Caller, provider: tuple[OidcProvider, str], db: Database
) -> None:
    _, url = provider
    await configure(client, admin, url)
    for key in ("id", "email", "username"):
        key = f"oauth2.userinfo_{'user_id' if key == 'id' else key}_jsonpath"
        assert (await client.delete(f"/v1/config/{key}", headers=admin.headers)).status_code == 201
    code = (await invite(client, admin, "bob@example.com")).json()["invite_code"]
    assert (await browser_flow(client, BOB, invite_code=code)).status_code == 302
    row = await user_row(db, "bob@example.com")
    assert row is not None and (row.external_id, row.name) == (BOB.sub, BOB.username)


async def test_logged_in_user_links_its_account_without_invite(
    client: httpx.AsyncClient, setup: Setup, make_user: MakeUser, db: Database
) -> None:
    carol = await make_user("carol@example.com")
    response = await client.get(
        "/authenticate", params={"redirect_uri": CLI_REDIRECT}, headers=carol.headers
    )
    assert response.status_code == 302
    finished = await client.get(await provider_login(response.headers["location"], BOB))
    assert finished.status_code == 302, finished.text
    row = await user_row(db, "carol@example.com")
    assert row is not None and row.external_id == BOB.sub
    # A bad token is ignored (the route does not require one): a newcomer is still refused.
    refused = await client.get(
        "/authenticate",
        params={"redirect_uri": CLI_REDIRECT},
        headers={"Authorization": "Bearer nope"},
    )
    callback = await provider_login(refused.headers["location"], ALICE)
    assert (await client.get(callback)).status_code == 403


# ------------------------------------------------------------------------------ failures


async def test_forged_state(client: httpx.AsyncClient, setup: Setup, db: Database) -> None:
    before = await counts(db)
    response = await client.get("/cb", params={"code": "anything", "state": "forged"})
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", "Unknown state: this login was not started on this master"),
    )
    missing = await client.get("/cb", params={"code": "anything"})
    assert (missing.status_code, missing.json()) == (
        400,
        oauth_error("invalid_request", "Missing state"),
    )
    assert await counts(db) == before
    assert setup.provider.token_requests == 0


async def test_state_works_once(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    callback = await provider_login(
        await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT)
    )
    assert (await client.get(callback)).status_code == 302
    before = await counts(db)
    replay = await client.get(callback)
    assert (replay.status_code, replay.json()) == (
        400,
        oauth_error(
            "invalid_request", "This login request was already used; start the login again"
        ),
    )
    assert await counts(db) == before
    assert setup.provider.token_requests == 1


async def test_failed_callback_still_spends_the_state(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    callback = await provider_login(
        await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT)
    )
    before = await counts(db)
    tampered = re.sub(r"code=[^&]+", "code=not-the-code", callback)
    refused = await client.get(tampered)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert refused.json()["error_description"].startswith(
        "Authentication failed: the provider refused the code (invalid_grant"
    )
    retry = await client.get(callback)
    assert retry.status_code == 400
    assert "already used" in retry.json()["error_description"]
    assert await counts(db) == before
    row = await user_row(db, "alice@example.com")
    assert row is not None and (row.external_id, row.invite_code) == (None, code)


async def test_expired_request(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    authorize_url = await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT)
    async with db.session() as session:
        await session.execute(
            update(AuthorizationRequest).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    callback = await provider_login(authorize_url)
    before = await counts(db)
    response = await client.get(callback)
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", "This login request has expired; start the login again"),
    )
    assert await counts(db) == before
    assert setup.provider.token_requests == 0


async def test_provider_error(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    authorize_url = await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT)
    # The user presses "Deny" at the provider, which sends the browser back with an error.
    callback = await provider_login(authorize_url, decision="deny")
    query = parse_qs(urlsplit(callback).query)
    assert query["error"] == ["access_denied"] and "state" in query
    before = await counts(db)
    response = await client.get(callback)
    assert response.status_code == 502
    assert response.json()["error"] == "provider_error"
    assert response.json()["error_description"].startswith(
        "The authentication provider returned an error: access_denied"
    )
    assert await counts(db) == before
    # The state was spent by the error, too.
    async with db.session() as session:
        request = (await session.execute(select(AuthorizationRequest))).scalar_one()
        assert request.used_at is not None
    forged = await client.get("/cb", params={"error": "access_denied", "state": "forged"})
    assert forged.status_code == 502


async def test_wrong_invite_code(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    await invite(client, admin, "alice@example.com")
    before = await counts(db)
    response = await client.get(
        "/authenticate", params={"invite_code": "0" * 32, "redirect_uri": CLI_REDIRECT}
    )
    assert (response.status_code, response.json()) == (
        403,
        oauth_error("access_denied", "Invalid invite code"),
    )
    assert await counts(db) == before
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuthorizationRequest)) == 0


async def test_invite_code_works_once(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    first = await provider_login(
        await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT)
    )
    second = await provider_login(
        await start_login(client, invite_code=code, redirect_uri=CLI_REDIRECT), BOB
    )
    assert (await client.get(first)).status_code == 302
    before = await counts(db)
    response = await client.get(second)
    assert (response.status_code, response.json()) == (
        403,
        oauth_error("access_denied", "Invalid invite code"),
    )
    assert await counts(db) == before
    assert (await user_row(db, "alice@example.com")).external_id == ALICE.sub  # type: ignore[union-attr]


async def test_newcomer_without_invite_is_refused(
    client: httpx.AsyncClient, setup: Setup, db: Database
) -> None:
    before = await counts(db)
    response = await browser_flow(client, BOB)
    assert (response.status_code, response.json()) == (
        403,
        oauth_error(
            "access_denied", "Not invited: ask an administrator of this master for an invite"
        ),
    )
    assert await counts(db) == before


async def test_local_admin_never_logs_in_through_the_provider(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, db: Database
) -> None:
    async with db.session() as session:
        await session.execute(
            update(User).where(User.email == "admin").values(external_id=ALICE.sub)
        )
        await session.commit()
    before = await counts(db)
    response = await browser_flow(client, ALICE)
    assert (response.status_code, response.json()) == (
        403,
        oauth_error(
            "access_denied", "The local admin cannot log in through the authentication provider"
        ),
    )
    assert await counts(db) == before


async def test_unreachable_token_endpoint(
    client: httpx.AsyncClient, admin: Caller, provider: tuple[OidcProvider, str], db: Database
) -> None:
    _, url = provider
    await configure(
        client, admin, url, **{"oauth2.token_endpoint": f"http://127.0.0.1:{free_port()}/token"}
    )
    code = (await invite(client, admin, "alice@example.com")).json()["invite_code"]
    before = await counts(db)
    response = await browser_flow(client, invite_code=code)
    assert (response.status_code, response.json()) == (
        502,
        oauth_error(
            "provider_error", "The authentication provider's token endpoint is unreachable"
        ),
    )
    assert await counts(db) == before


# ------------------------------------------------------------------ configuration, requests


async def test_not_configured(client: httpx.AsyncClient, make_user: MakeUser, db: Database) -> None:
    body = oauth_error("server_error", "Authentication provider not configured")
    for path in ("/authenticate", "/oauth2/authenticate"):
        response = await client.get(path, params={"redirect_uri": CLI_REDIRECT})
        assert (response.status_code, response.json()) == (501, body)
    admin = await make_user("root@example.com", roles=("user_admin",))
    response = await invite(client, admin, "alice@example.com")
    assert (response.status_code, response.json()) == (501, body)
    assert await user_row(db, "alice@example.com") is None


BAD_REDIRECTS = [
    "http://evil.example.com/cb",
    "https://localhost.evil.example/cb",
    "http://localhost@evil.example/cb",
    "ftp://localhost/cb",
    "javascript:alert(1)",
    "//evil.example/code",
    "/elsewhere",
    "http://[::1",
]
GOOD_REDIRECTS = [
    "http://localhost/cb",
    "https://localhost:8443/x?y=1",
    "http://127.0.0.1:5177/",
    "http://[::1]:5177/",
    "/code",
]


async def test_redirect_uri_must_stay_on_the_callers_machine(
    client: httpx.AsyncClient, setup: Setup, db: Database
) -> None:
    refused = oauth_error(
        "invalid_request",
        "Invalid redirect_uri: only http(s)://localhost[:port]/… or /code are allowed",
    )
    for redirect_uri in BAD_REDIRECTS:
        response = await client.get("/authenticate", params={"redirect_uri": redirect_uri})
        assert (response.status_code, response.json()) == (400, refused), redirect_uri
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuthorizationRequest)) == 0
    for redirect_uri in GOOD_REDIRECTS:
        response = await client.get("/authenticate", params={"redirect_uri": redirect_uri})
        assert response.status_code == 302, redirect_uri


async def test_bad_expires_in(client: httpx.AsyncClient, setup: Setup) -> None:
    response = await client.get(
        "/authenticate", params={"redirect_uri": CLI_REDIRECT, "expires_in": "soon"}
    )
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", "Expires in isn't an integer"),
    )


async def test_authenticate_is_rate_limited(
    runtime: Runtime, make_user: MakeUser, provider: tuple[OidcProvider, str]
) -> None:
    limit = 2
    limiter = RedisRateLimiter(AsyncRedis.from_url(runtime.settings.redis_url), limit, 86_400)
    app = create_app(dataclasses.replace(runtime, rate_limiter=limiter))
    admin = await make_user("admin")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        await configure(client, admin, provider[1])
        statuses = [
            (await client.get("/authenticate", params={"redirect_uri": CLI_REDIRECT})).status_code
            for _ in range(limit + 1)
        ]
        assert statuses == [302, 302, 429]


# ------------------------------------------------------------------------------ invites


async def test_invites_need_a_user_admin(
    client: httpx.AsyncClient, setup: Setup, make_user: MakeUser, db: Database
) -> None:
    plain = await make_user("plain@example.com")
    response = await invite(client, plain, "alice@example.com")
    assert (response.status_code, response.json()) == (
        403,
        oauth_error("access_denied", "You do not have the permission to create invites"),
    )
    assert await user_row(db, "alice@example.com") is None
    listing = await client.get("/v1/users/invites", headers=plain.headers)
    assert (listing.status_code, listing.json()) == (403, {"error": "Operation not allowed"})
    anonymous = await client.post(
        "/oauth2/authorize", json={"response_type": "invite", "email": "alice@example.com"}
    )
    assert anonymous.status_code == 403
    assert anonymous.json()["error"] == "invalid_token"


async def test_invites_list_and_reuse(
    client: httpx.AsyncClient, setup: Setup, make_user: MakeUser, db: Database
) -> None:
    user_admin = await make_user("ua@example.com", roles=("user_admin",))
    first = (await invite(client, user_admin, "alice@example.com", username="Alice")).json()
    bob = (await invite(client, user_admin, "bob@example.com", external_id="bob-0002")).json()
    again = await invite(client, user_admin, "alice@example.com")
    assert again.status_code == 201
    renewed = again.json()["invite_code"]
    assert renewed != first["invite_code"]
    listing = await client.get("/v1/users/invites", headers=user_admin.headers)
    assert listing.status_code == 200
    invites = listing.json()["invites"]
    assert [(i["email"], i["invite_code"]) for i in invites] == [
        ("alice@example.com", renewed),
        ("bob@example.com", bob["invite_code"]),
    ]
    assert all(re.match(r"\d{4}-\d\d-\d\dT", i["created_at"]) for i in invites)
    row = await user_row(db, "alice@example.com")
    assert row is not None and row.name == "Alice"
    # The replaced code no longer opens a login.
    stale = await client.get(
        "/authenticate", params={"invite_code": first["invite_code"], "redirect_uri": "/code"}
    )
    assert stale.status_code == 403
    # An invite that names the external id pre-links the account.
    assert (await browser_flow(client, BOB)).status_code == 302


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({}, "Missing parameter: email"),
        ({"email": "not-an-email"}, "Email isn't in the right format"),
        ({"email": "admin"}, "Email isn't in the right format"),
    ],
)
async def test_invite_validation(
    client: httpx.AsyncClient, setup: Setup, admin: Caller, params: dict[str, str], description: str
) -> None:
    response = await client.post(
        "/oauth2/authorize", headers=admin.headers, json={"response_type": "invite", **params}
    )
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", description),
    )


async def test_invite_external_id_taken(
    client: httpx.AsyncClient, setup: Setup, admin: Caller
) -> None:
    assert (await invite(client, admin, "a@example.com", external_id="x1")).status_code == 201
    response = await invite(client, admin, "b@example.com", external_id="x1")
    assert (response.status_code, response.json()) == (
        400,
        oauth_error("invalid_request", "External id is already linked to another user"),
    )
