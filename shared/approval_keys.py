"""The key pair that proves an approval decision came from the gateway.

The gateway alone holds the Ed25519 private key (`KODA_APPROVAL_SIGNING_KEY`) and signs every
decision it takes; the actions service holds only the public key (`KODA_APPROVAL_VERIFY_KEY`)
and runs a gated script or an action kind only for an approved record whose signature checks
out. A record written into the approvals bucket by anyone else (the worker may write there: it
proposes) carries no valid signature and unlocks nothing.

Keys travel as base64 of their 32 raw bytes. `cryptography` is imported at first use: only the
gateway and actions ever sign or verify.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import KodaError


class KeyFormatError(KodaError, ValueError):
    """A configured key that is not a base64 Ed25519 key."""


def generate() -> tuple[str, str]:
    """A fresh pair: (private key, public key), each base64 of 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return _b64(raw), public_of(_b64(raw))


def public_of(private_b64: str) -> str:
    """The public key (base64) belonging to a private key (base64)."""
    from cryptography.hazmat.primitives import serialization

    public = _private(private_b64).public_key()
    return _b64(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def sign(payload: dict[str, Any], private_b64: str) -> str:
    """The base64 signature of `payload`'s canonical JSON."""
    return _b64(_private(private_b64).sign(canonical(payload)))


def verify(payload: dict[str, Any], signature: str | None, public_b64: str) -> bool:
    """True only if `signature` is the private key's signature of exactly this payload."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not signature:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(_raw(public_b64))
        key.verify(_raw(signature), canonical(payload))
    except (InvalidSignature, KeyFormatError, ValueError):
        return False
    return True


def canonical(payload: dict[str, Any]) -> bytes:
    """One byte string per payload, whatever the key order: what is signed."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def _private(private_b64: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        return Ed25519PrivateKey.from_private_bytes(_raw(private_b64))
    except ValueError as exc:
        raise KeyFormatError(f"not an Ed25519 private key: {exc}") from None


def _raw(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("not base64") from None
    if len(raw) not in (32, 64):
        raise KeyFormatError(f"expected 32 bytes (64 for a signature), got {len(raw)}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
