"""This unit's Ed25519 key pair, its message counter, and the site-key shortcut.

The key pair is created at first start and kept in the data folder (``storage.var_dir``) as
``peer-ed25519.key`` (the raw 32-byte private key, mode 0600, written atomically), not in the
settings database: the database is exported and backed up, a private key must not travel
with it, and a unit restored from a backup onto a second unit must not become its twin.
``peer-epoch`` counts the starts: every signed statement carries ``epoch << 32 | seq``, so a
peer's counter only ever grows, across restarts, without a clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

KEY_FILE = "peer-ed25519.key"
EPOCH_FILE = "peer-epoch"
_SITE_LABEL = b"smartPDU peer exchange v1"  # as protocol 1 derived it: one site key, one tag
_HEX = re.compile(r"[0-9a-f]+")


def canonical_json(obj: object) -> bytes:
    """What is signed: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """``data`` into ``path`` atomically (a power cut leaves the old file or the new one)."""
    _write_private(path, data, mode)


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """``data`` into ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fingerprint(public_hex: str) -> str:
    """What an admin compares: 16 hex digits of SHA-256 of the public key, in fours."""
    digest = hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def verify(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """An Ed25519 signature check that never raises."""
    if len(public_hex) != 64 or len(signature_hex) != 128:
        return False
    if not _HEX.fullmatch(public_hex) or not _HEX.fullmatch(signature_hex):
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """This unit's key pair and counter; :meth:`load` keeps them in a data folder."""

    def __init__(self, private: Ed25519PrivateKey, epoch: int = 1) -> None:
        self._private = private
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_hex = raw.hex()
        self.fingerprint = fingerprint(self.public_hex)
        self._epoch = epoch & 0x1FFFFF  # the counter stays below 2**53 (a JSON number)
        self._seq = 0

    @classmethod
    def generate(cls, epoch: int = 1) -> Identity:
        return cls(Ed25519PrivateKey.generate(), epoch)

    @classmethod
    def load(cls, folder: Path) -> Identity:
        """The unit's key from ``folder`` (created at first start), next epoch counted."""
        key_path = folder / KEY_FILE
        try:
            raw = key_path.read_bytes()
            private = Ed25519PrivateKey.from_private_bytes(raw)
        except FileNotFoundError:
            private = Ed25519PrivateKey.generate()
            raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            _write_private(key_path, raw)
        epoch_path = folder / EPOCH_FILE
        try:
            epoch = int(epoch_path.read_text().strip()) + 1
        except (FileNotFoundError, ValueError):
            epoch = 1
        _write_private(epoch_path, f"{epoch}\n".encode())
        return cls(private, epoch)

    def next_counter(self) -> int:
        self._seq += 1
        if self._seq >= 1 << 32:  # ~13 years of 10 statements a second: a new epoch
            self._epoch, self._seq = self._epoch + 1, 1
        return self._epoch << 32 | self._seq

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()


class SiteKey:
    """The optional pre-shared ``peers.site_key``: units proving it adopt each other."""

    def __init__(self, secret: str) -> None:
        self.enabled = bool(secret)
        material = secret.encode("utf-8")
        self._key = hmac.new(material, _SITE_LABEL, hashlib.sha256).digest()
        # In mDNS TXT so units of other sites skip each other. Not a secret, not a proof.
        self.tag = hmac.new(self._key, b"site tag", hashlib.sha256).hexdigest()[:8]

    def proof(self, unit_id: str, public_hex: str) -> str | None:
        """Binds a unit's id and key to the site key (copying it to another key is useless)."""
        if not self.enabled:
            return None
        message = b"smartpdu-site-proof/2\n" + f"{unit_id}\n{public_hex}".encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def proves(self, unit_id: str, public_hex: str, proof: str | None) -> bool:
        mine = self.proof(unit_id, public_hex)
        return mine is not None and proof is not None and hmac.compare_digest(mine, proof)
