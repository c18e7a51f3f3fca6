"""The external authentication provider: its settings from ``/v1/config`` and its HTTP calls.

The master is an ordinary OAuth2 client of the provider (authorization code flow): it sends the
browser to ``oauth2.authorize_endpoint``, trades the code at ``oauth2.token_endpoint`` and reads
the user from ``oauth2.userinfo_endpoint``. Plain httpx with explicit timeouts, no redirects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core import config_store
from core.jsonpath import JsonPathError, first_value
from core.oauth2 import OAuth2Error
from core.vault import Vault

log = logging.getLogger(__name__)

ROOT_URL_KEY = "server.root_url"
# Keys without which no login can work; every other key has a default.
REQUIRED_KEYS = (
    "oauth2.client_id",
    "oauth2.client_secret",
    "oauth2.authorize_endpoint",
    "oauth2.token_endpoint",
    "oauth2.userinfo_endpoint",
)
FORM = "application/x-www-form-urlencoded"
# The original's defaults, plus the OpenID Connect claim names at the end.
DEFAULT_SCOPE = "user:email"
DEFAULT_USERNAME_PATH = "$..username;$..login;$.preferred_username"
DEFAULT_EMAIL_PATH = "$..email;$..emails;$..primary_email"
DEFAULT_USER_ID_PATH = "$..id;$..uid;$..userid;$..user_id;$.sub"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_TRUE = {"true", "1", "yes", "on"}


def not_configured() -> OAuth2Error:
    """501: external login and invites need a provider."""
    return OAuth2Error(501, "server_error", "Authentication provider not configured")


def _bad_gateway(description: str) -> OAuth2Error:
    return OAuth2Error(502, "provider_error", description)


def _failed(description: str) -> OAuth2Error:
    return OAuth2Error(400, "invalid_request", f"Authentication failed: {description}")


@dataclass(frozen=True)
class UserInfo:
    """What the provider told about the person who logged in."""

    user_id: str
    email: str | None
    username: str | None


@dataclass(frozen=True)
class Provider:
    """A configured provider; ``callback_url`` is the master's ``/cb``."""

    client_id: str
    client_secret: str
    authorize_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    callback_url: str
    scope: str = DEFAULT_SCOPE
    token_method: str = "post"
    token_content_type: str = FORM
    code_requires_basic_auth: bool = False
    username_path: str = DEFAULT_USERNAME_PATH
    email_path: str = DEFAULT_EMAIL_PATH
    user_id_path: str = DEFAULT_USER_ID_PATH

    def authorize_url(self, state: str) -> str:
        """Where to send the browser: the authorize endpoint with our client's parameters."""
        parts = urlsplit(self.authorize_endpoint)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query += [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.callback_url),
            ("scope", self.scope),
            ("state", state),
        ]
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def exchange_code(self, code: str) -> str:
        """Trade the provider's code for the provider's access token."""
        params = {"grant_type": "authorization_code", "code": code}
        params["redirect_uri"] = self.callback_url
        auth: httpx.BasicAuth | None = None
        if self.code_requires_basic_auth:
            auth = httpx.BasicAuth(self.client_id, self.client_secret)
        else:
            params.update(client_id=self.client_id, client_secret=self.client_secret)
        request: dict[str, Any] = {"headers": {"Accept": "application/json"}, "auth": auth}
        if self.token_method == "get":
            request["params"] = params
        elif "json" in self.token_content_type:
            request["json"] = params
        else:
            request["data"] = params
        method = "GET" if self.token_method == "get" else "POST"
        response = await _call(method, self.token_endpoint, "token", **request)
        data = _decode(response)
        if response.status_code >= 400 or not isinstance(data, dict):
            raise _failed(f"the provider refused the code ({_describe(data, response)})")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise _failed("the provider's token response has no access_token")
        return token

    async def userinfo(self, access_token: str) -> UserInfo:
        """The user behind ``access_token``, picked out with the configured JSONPaths."""
        response = await _call(
            "GET",
            self.userinfo_endpoint,
            "userinfo",
            headers={"Accept": "application/json", "Authorization": f"Bearer {access_token}"},
        )
        data = _decode(response)
        if response.status_code >= 400:
            raise _failed(f"the provider refused the user info ({_describe(data, response)})")
        if not isinstance(data, dict | list):
            raise _failed("the provider's user info is not JSON")
        try:
            user_id = first_value(data, self.user_id_path)
            email = first_value(data, self.email_path)
            username = first_value(data, self.username_path)
        except JsonPathError as exc:
            raise OAuth2Error(
                500, "server_error", f"Bad oauth2.userinfo_*_jsonpath: {exc}"
            ) from exc
        if user_id is None:
            raise _failed("the provider's user info has no user id")
        return UserInfo(user_id=user_id, email=email, username=username)


async def _call(method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
    """One request to the provider; network failures and 5xx answers become 502."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
            response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        log.warning("authentication provider %s endpoint failed: %s", what, type(exc).__name__)
        raise _bad_gateway(f"The authentication provider's {what} endpoint is unreachable") from exc
    if response.status_code >= 500:
        log.warning("authentication provider %s endpoint answered %s", what, response.status_code)
        raise _bad_gateway(
            f"The authentication provider's {what} endpoint failed (HTTP {response.status_code})"
        )
    return response


def _decode(response: httpx.Response) -> Any:
    """JSON or form-encoded bodies (some providers answer the token request in a form)."""
    content_type = response.headers.get("content-type", "")
    try:
        if "json" in content_type:
            return msgspec.json.decode(response.content)
        if "urlencoded" in content_type:
            return dict(parse_qsl(response.text))
    except (msgspec.DecodeError, ValueError):
        return None
    return None


def _describe(data: Any, response: httpx.Response) -> str:
    """The provider's own error code and description, bounded, else the HTTP status."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        description = data.get("error_description")
        text = f"{error}: {description}" if isinstance(description, str) else error
        return text[:200]
    return f"HTTP {response.status_code}"


def _text(value: config_store.ConfigValue) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


OPTIONAL_KEYS = (
    ROOT_URL_KEY,
    "oauth2.userinfo_scope",
    "oauth2.token_method",
    "oauth2.token_post_content_type",
    "oauth2.code_requires_basic_auth",
    "oauth2.userinfo_username_jsonpath",
    "oauth2.userinfo_email_jsonpath",
    "oauth2.userinfo_user_id_jsonpath",
)


async def load_provider(session: AsyncSession, vault: Vault, public_url: str) -> Provider | None:
    """The configured provider, or None when a required key is missing."""
    stored = await config_store.get_values(session, vault, (*REQUIRED_KEYS, *OPTIONAL_KEYS))
    values = {key: _text(value) for key, value in stored.items()}
    required = [values.get(key) for key in REQUIRED_KEYS]
    if any(value is None for value in required):
        return None
    client_id, client_secret, authorize, token, userinfo = (str(v) for v in required)
    root = (values.get(ROOT_URL_KEY) or public_url).rstrip("/")
    basic_auth = (values.get("oauth2.code_requires_basic_auth") or "").lower() in _TRUE
    return Provider(
        client_id=client_id,
        client_secret=client_secret,
        authorize_endpoint=authorize,
        token_endpoint=token,
        userinfo_endpoint=userinfo,
        callback_url=f"{root}/cb",
        scope=values.get("oauth2.userinfo_scope") or DEFAULT_SCOPE,
        token_method=(values.get("oauth2.token_method") or "post").lower(),
        token_content_type=(values.get("oauth2.token_post_content_type") or FORM).lower(),
        code_requires_basic_auth=basic_auth,
        username_path=values.get("oauth2.userinfo_username_jsonpath") or DEFAULT_USERNAME_PATH,
        email_path=values.get("oauth2.userinfo_email_jsonpath") or DEFAULT_EMAIL_PATH,
        user_id_path=values.get("oauth2.userinfo_user_id_jsonpath") or DEFAULT_USER_ID_PATH,
    )


async def root_url(session: AsyncSession, vault: Vault, public_url: str) -> str:
    """``server.root_url`` or, when unset, the master's public URL; no trailing slash."""
    value = _text(await config_store.get_value(session, vault, ROOT_URL_KEY))
    return (value or public_url).rstrip("/")
