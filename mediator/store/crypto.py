"""Encryption at rest of message bodies in the store (AES-256-GCM), and blind indexes.

When ``store.encryption_key_file`` is set, every message body and every route request/response
kept in the transaction log is sealed with AES-GCM (a fresh 96-bit nonce each time, the
transaction id as associated data, so a body cannot be moved to another row). Patient identifiers
kept for search and ordering are replaced by a keyed hash (HMAC-SHA256): an exact search still
works, the file alone tells nothing. Without a key the store keeps plain text (development).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MENC1"
TEXT_PREFIX = "enc1:"


class StoreKeyError(ValueError):
    """The key file is missing or malformed, or a sealed value cannot be opened."""


class Cipher:
    """Seals bytes and text; ``Cipher(None)`` is the identity (no key configured)."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != 32:
            raise StoreKeyError("the store key must be 32 bytes (256 bits)")
        self._aead = AESGCM(key) if key else None
        self._blind_key = hashlib.sha256(b"mediator-blind-index" + key).digest() if key else None

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, data: bytes, aad: str) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(12)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, aad.encode())

    def open(self, data: bytes, aad: str) -> bytes:
        if not data.startswith(MAGIC):
            return data  # stored before encryption was turned on
        if self._aead is None:
            raise StoreKeyError("this body is encrypted: configure store.encryption_key_file to read it")
        nonce, ct = data[len(MAGIC):len(MAGIC) + 12], data[len(MAGIC) + 12:]
        return self._aead.decrypt(nonce, ct, aad.encode())

    def seal_text(self, text: str, aad: str) -> str:
        if self._aead is None or not text:
            return text
        return TEXT_PREFIX + base64.b64encode(self.seal(text.encode("utf-8"), aad)).decode()

    def open_text(self, text: str, aad: str) -> str:
        if not text.startswith(TEXT_PREFIX):
            return text
        return self.open(base64.b64decode(text[len(TEXT_PREFIX):]), aad).decode("utf-8")

    def blind(self, value: str) -> str:
        """A keyed hash of an identifier (equality search without storing the value)."""
        if self._blind_key is None or not value:
            return value
        return "h:" + hmac.new(self._blind_key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def load_key(path: str | Path) -> bytes:
    """A 256-bit key from a file holding it as 64 hex characters or base64 (made by ``mediator keygen``)."""
    p = Path(path)
    try:
        text = p.read_text().strip()
    except OSError as exc:
        raise StoreKeyError(f"cannot read the store key {p}: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except ValueError:
        raise StoreKeyError(f"{p}: expected 64 hex characters or base64 of 32 bytes") from None
    if len(key) != 32:
        raise StoreKeyError(f"{p}: the key must be 32 bytes, got {len(key)}")
    return key


def new_key() -> str:
    return os.urandom(32).hex()
