"""AES-256-GCM envelope encryption: a data key per value, wrapped by a versioned master key."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "kv1"
_NONCE = 12


class VaultError(Exception):
    """The vault cannot encrypt or decrypt (missing, wrong or unknown key)."""


@dataclass(frozen=True)
class MasterKey:
    """A master key and the short id stored beside every value it wraps."""

    key_id: str
    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> MasterKey:
        """Stretch an operator-given secret into a 256-bit key (any length is accepted)."""
        if len(secret) < 16:
            raise VaultError("vault key must be at least 16 characters")
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"kontena-vault-v1"
        ).derive(secret.encode())
        return cls(key_id=hashlib.sha256(key).hexdigest()[:8], key=key)


class Vault:
    """Encrypts with the newest key; decrypts with any configured key."""

    def __init__(self, current: MasterKey, older: list[MasterKey] | None = None) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in [*(older or []), current]}

    def encrypt(self, plaintext: str, *, context: str = "") -> str:
        """Encrypt ``plaintext``; ``context`` (e.g. the row it belongs to) is authenticated."""
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce, value_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
        key_id = self.current.key_id.encode()
        wrapped = AESGCM(self.current.key).encrypt(wrap_nonce, data_key, key_id)
        sealed = AESGCM(data_key).encrypt(value_nonce, plaintext.encode(), context.encode())
        blob = base64.b64encode(wrap_nonce + wrapped + value_nonce + sealed).decode()
        return f"{PREFIX}:{self.current.key_id}:{blob}"

    def decrypt(self, token: str, *, context: str = "") -> str:
        """Decrypt a value made by :meth:`encrypt` with any known key (memoized)."""
        # Ciphertexts never repeat, so a cache keyed by them is always right, and lists
        # that render many vault values (grid tokens) skip the two AES operations each.
        return self._decrypt_cached(token, context)

    @functools.lru_cache(maxsize=4096)  # noqa: B019  (one vault per process, lives forever)
    def _decrypt_cached(self, token: str, context: str) -> str:
        try:
            prefix, key_id, blob = token.split(":", 2)
        except ValueError:
            raise VaultError("value is not a vault ciphertext") from None
        key = self._keys.get(key_id)
        if prefix != PREFIX or key is None:
            raise VaultError(f"value was encrypted with unknown vault key {key_id}")
        raw = base64.b64decode(blob)
        wrap_nonce, wrapped = raw[:_NONCE], raw[_NONCE : _NONCE + 48]
        value_nonce, sealed = raw[_NONCE + 48 : 2 * _NONCE + 48], raw[2 * _NONCE + 48 :]
        try:
            data_key = AESGCM(key.key).decrypt(wrap_nonce, wrapped, key_id.encode())
            return AESGCM(data_key).decrypt(value_nonce, sealed, context.encode()).decode()
        except Exception as exc:  # cryptography raises InvalidTag without detail
            raise VaultError("vault value failed authentication") from exc

    def needs_rewrap(self, token: str) -> bool:
        """True when ``token`` was not made with the newest key."""
        return not token.startswith(f"{PREFIX}:{self.current.key_id}:")

    def rewrap(self, token: str, *, context: str = "") -> str:
        """Wrap ``token``'s data key with the newest key; the value ciphertext is kept as is.

        The value is authenticated (with ``context``) first, so a damaged or misplaced
        ciphertext fails here instead of being carried forward under the new key.
        """
        self.decrypt(token, context=context)
        if not self.needs_rewrap(token):
            return token
        _prefix, key_id, blob = token.split(":", 2)
        raw = base64.b64decode(blob)
        wrap_nonce, wrapped, rest = raw[:_NONCE], raw[_NONCE : _NONCE + 48], raw[_NONCE + 48 :]
        data_key = AESGCM(self._keys[key_id].key).decrypt(wrap_nonce, wrapped, key_id.encode())
        new_nonce, new_id = os.urandom(_NONCE), self.current.key_id
        rewrapped = AESGCM(self.current.key).encrypt(new_nonce, data_key, new_id.encode())
        return f"{PREFIX}:{new_id}:{base64.b64encode(new_nonce + rewrapped + rest).decode()}"


def load_vault(vault_key: str, old_keys: str, data_dir: str, *, generate: bool) -> Vault:
    """Build the vault from settings; in embedded mode a key file is made on first start."""
    secret = vault_key
    if not secret:
        key_file = Path(data_dir) / "vault.key"
        if key_file.exists():
            secret = key_file.read_text().strip()
        elif generate:
            key_file.parent.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(32)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secret + "\n")
        else:
            raise VaultError(
                "KONTENA_VAULT_KEY is not set: the master needs a vault key (at least 16 "
                "characters) to encrypt secrets; see docs/configuration.md"
            )
    older = [MasterKey.from_secret(k.strip()) for k in old_keys.split(",") if k.strip()]
    return Vault(MasterKey.from_secret(secret), older)
