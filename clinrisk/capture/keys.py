"""Keyed pseudonyms for record and patient ids: HMAC-SHA256 under a secret key.

The same id always gets the same key (so outcomes join to captures later), and without the key
nobody can get back from the pseudonym to the id, not even by trying every possible id. The key
lives in a local file readable by its owner only (mode 0600), or in Secrets Manager.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from clinrisk.errors import ClinriskError

KEY_BYTES = 32


class IdKeyError(ClinriskError):
    """The id key is missing, too short, or readable by others."""


class IdKeyer:
    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise IdKeyError(f"the id key must be at least {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "IdKeyer(<secret>)"

    def pseudonym(self, kind: str, value: str) -> str:
        """`kind` separates id spaces: encounter 7 and patient 7 get different pseudonyms."""
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def record_key(self, encounter_id: object) -> str:
        return self.pseudonym("encounter", str(encounter_id))

    def patient_key(self, patient_id: object) -> str:
        return self.pseudonym("patient", str(patient_id))


def local_key(path: Path) -> bytes:
    """The key in `path`, made on first use with mode 0600. A key file others can read is refused."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES))
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise IdKeyError(f"{path} is readable by others; chmod 600 it")
    return bytes.fromhex(path.read_text().strip())
