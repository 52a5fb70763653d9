"""The token signing key and the published key set (JWKS).

Production reads the key from JWT_PRIVATE_KEY; development generates one key pair once into
JWT_KEYS_DIR (default <repo>/.local/keys, git-ignored) and reuses it, so tokens survive restarts.
Older public keys stay verifiable through JWT_ADDITIONAL_PUBLIC_KEYS during a rotation.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from quimbi_common.auth import generate_rsa_private_key_pem, public_jwk

DEV_KEY_FILE = "agents-jwt-private.pem"


@dataclass(frozen=True)
class KeyRing:
    """The key that signs new tokens, and every public key tokens may still be verified with."""

    private_pem: str
    kid: str
    generated: bool
    additional: tuple[dict[str, Any], ...] = ()

    @cached_property
    def jwks(self) -> dict[str, Any]:
        """Computed once: deriving a public key from the PEM is not free."""
        current = public_jwk(self.private_pem, self.kid)
        others = [k for k in self.additional if k.get("kid") != self.kid]
        return {"keys": [current, *others]}


def thumbprint(private_or_public_pem: str) -> str:
    """The RFC 7638 JWK thumbprint: a stable `kid` derived from the key itself."""
    jwk = public_jwk(private_or_public_pem, "x")
    canonical = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]


def parse_additional_keys(raw: str | None) -> tuple[dict[str, Any], ...]:
    """A JWKS document (`{"keys": [...]}`) or a JSON list of JWKs; each needs `kid` and `kty`."""
    if not raw or not raw.strip():
        return ()
    data = json.loads(raw)
    keys = data.get("keys", []) if isinstance(data, dict) else data
    if not isinstance(keys, list) or not all(
        isinstance(k, dict) and k.get("kid") and k.get("kty") for k in keys
    ):
        raise ValueError("JWT_ADDITIONAL_PUBLIC_KEYS must be a JWKS or a list of JWKs with kid")
    return tuple(keys)


def dev_private_key(directory: Path) -> str:
    """The development key in `directory`, generated once; concurrent starters agree on one."""
    path = directory / DEV_KEY_FILE
    if path.exists():
        return path.read_text()
    directory.mkdir(parents=True, exist_ok=True)
    pem = generate_rsa_private_key_pem()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".key-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text()


def load_keyring(
    private_key: str | None,
    key_id: str | None,
    additional_public_keys: str | None,
    keys_dir: Path,
) -> KeyRing:
    additional = parse_additional_keys(additional_public_keys)
    if private_key:
        pem = private_key.replace("\\n", "\n").strip() + "\n"
        return KeyRing(pem, key_id or thumbprint(pem), generated=False, additional=additional)
    pem = dev_private_key(keys_dir)
    return KeyRing(pem, key_id or f"dev-{thumbprint(pem)}", generated=True, additional=additional)
