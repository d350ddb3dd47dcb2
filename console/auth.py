"""Operator sign-in. The console is read-only until an operator signs in; every change is then
recorded in the audit log under that operator's name.

Operators come from ``HI_MOE_OPERATORS``: ``name:HASH`` entries separated by commas, where HASH is
``pbkdf2_sha256$ITERATIONS$SALT_HEX$DIGEST_HEX`` (make one with ``hi-moe operators hash NAME``).
Plain-text passwords are never stored or accepted in the configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP 2023 guidance for PBKDF2-HMAC-SHA256


class OperatorConfigError(ValueError):
    pass


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != ALGORITHM:
            return False
        candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def parse_operators(spec: str | None) -> dict[str, str]:
    """``name:hash,name2:hash2`` -> {name: hash}; refuses anything that is not a hash."""
    operators: dict[str, str] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, encoded = entry.partition(":")
        if not sep or not name.strip():
            raise OperatorConfigError(f"operator entry {entry.split(':')[0]!r} is not NAME:HASH")
        if not encoded.startswith(ALGORITHM + "$") or encoded.count("$") != 3:
            raise OperatorConfigError(f"operator {name.strip()!r} has no {ALGORITHM} hash; make one "
                                      "with `hi-moe operators hash NAME` (plain passwords are refused)")
        operators[name.strip()] = encoded
    return operators


def authenticate(operators: dict[str, str], name: str, password: str) -> bool:
    encoded = operators.get(name)
    if encoded is None:
        # Spend the same time as a real check so names cannot be probed by timing.
        verify_password(password, hash_password("x", iterations=ITERATIONS, salt=b"\0" * 16))
        return False
    return verify_password(password, encoded)
