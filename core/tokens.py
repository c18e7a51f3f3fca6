"""Random bearer secrets and the hashes the database keeps instead of them."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time


def new_access_token() -> str:
    """A 64-hex-character access token, as Kontena made them."""
    return secrets.token_hex(32)


def new_refresh_token() -> str:
    """A 128-hex-character refresh token."""
    return secrets.token_hex(64)


def new_code() -> str:
    """A short authorization code (single use, exchanged at ``/oauth2/token``)."""
    return secrets.token_hex(6)


def new_grid_token() -> str:
    """A base64 grid join token of 64 random bytes."""
    return base64.b64encode(secrets.token_bytes(64)).decode()


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret; enough because such secrets cannot be guessed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def object_id() -> str:
    """A 24-hex id shaped like a MongoDB ObjectId: time first, so ids sort by creation."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"
