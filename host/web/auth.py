"""Admin login for the web interface: the password file, sessions, CSRF and login throttling.

Reading stays open on the show LAN (as in the manual) unless ``web.read_open = false``;
every change (a name, a label, a supervision range, a virtual panel press) needs the admin
login. Nothing behind the login can switch or trip anything either (R7).

* The password is set with ``smartpdu passwd`` (:func:`passwd_main`): a salted scrypt hash in
  ``web.admin_password_file``, mode 0600, written atomically (temp file, fsync, rename). With
  no file, nobody can log in and the interface is read-only.
* A login gives a session cookie (``HttpOnly``, ``SameSite=Strict``, random 256-bit id, kept
  in memory only: a restart logs everyone out) and a CSRF token the page keeps in memory and
  sends in the ``X-CSRF-Token`` header with every write.
* Failed logins are throttled per client address and overall (a LAN is not a safe place
  for an unlimited password guesser), and every attempt costs a scrypt, run off the loop.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from host.config import ConfigError, default_config, load_config

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "PasswordFile",
    "Session",
    "SessionStore",
    "hash_password",
    "passwd_main",
    "verify_password",
    "write_password_file",
]

SESSION_COOKIE = "smartpdu_session"
CSRF_HEADER = "X-CSRF-Token"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
SESSION_IDLE_S = 12 * 3600.0  # a show day; every request moves it on
SESSION_MAX_S = 7 * 86400.0
MAX_SESSIONS = 64

# scrypt cost: 16 MiB and ~50 ms on a PC, a few hundred ms on a Pi: fine for a login,
# ruinous for a guesser.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_FORMAT = "scrypt"


class PasswordFileError(Exception):
    """The password file is unreadable or not in the expected format."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def check_new_password(password: str) -> str:
    """ValueError with a message fit for the user for a password that cannot be set."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password has at most {MAX_PASSWORD_CHARS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise ValueError("the password cannot contain control characters")
    return password


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), one line."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=_SCRYPT_N,
        r=_SCRYPT_R,
        p=_SCRYPT_P,
        maxmem=_SCRYPT_MAXMEM,
        dklen=32,
    )
    return f"{_FORMAT}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` line."""
    try:
        kind, n_text, r_text, p_text, salt_text, digest_text = stored.strip().split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except ValueError as exc:
        raise PasswordFileError(f"not a password hash line: {exc}") from None
    if kind != _FORMAT or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise PasswordFileError("unsupported password hash parameters")
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MAXMEM,
        dklen=len(expected),
    )
    return hmac.compare_digest(digest, expected)


def write_password_file(path: str | os.PathLike[str], password: str) -> Path:
    """Hash ``password`` into ``path`` atomically, readable by the owner only (0600)."""
    target = Path(path)
    line = hash_password(check_new_password(password)) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".admin-password.", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # the rename is durable once the directory is
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return target


@dataclass
class PasswordFile:
    """The admin password file, re-read when it changes (``smartpdu passwd`` while the
    service runs takes effect at the next login)."""

    path: Path | None
    _cached: tuple[float, int, str] | None = None

    def hash_line(self) -> str | None:
        """The stored hash, or None when no password is set."""
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            self._cached = None
            return None
        if self._cached is not None and self._cached[:2] == (st.st_mtime, st.st_size):
            return self._cached[2]
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        self._cached = (st.st_mtime, st.st_size, text)
        return text or None

    @property
    def is_set(self) -> bool:
        return self.hash_line() is not None

    def check(self, password: str) -> bool:
        """Blocking (scrypt): run it in an executor."""
        line = self.hash_line()
        if line is None:
            return False
        try:
            return verify_password(password, line)
        except PasswordFileError:
            return False


# ----------------------------------------------------------------------------- sessions


@dataclass
class Session:
    id: str
    csrf_token: str
    created: float
    last_used: float


@dataclass
class SessionStore:
    """Sessions in memory: a restart of the aggregator logs everyone out."""

    clock: Callable[[], float] = time.monotonic
    idle_s: float = SESSION_IDLE_S
    max_s: float = SESSION_MAX_S
    _sessions: dict[str, Session] = field(default_factory=dict)

    def create(self) -> Session:
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            del self._sessions[oldest.id]
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_used > self.idle_s or now - session.created > self.max_s:
            del self._sessions[session_id]
            return None
        session.last_used = now
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def clear(self) -> None:
        self._sessions.clear()

    def _expire(self) -> None:
        now = self.clock()
        for sid, s in list(self._sessions.items()):
            if now - s.last_used > self.idle_s or now - s.created > self.max_s:
                del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf_token, token)


# ----------------------------------------------------------------------------- CLI


def _password_file_from_config(config_path: str | None) -> Path:
    config = load_config(config_path, require_ports=False) if config_path else default_config()
    path = config.web.admin_password_file
    return path if path is not None else config.storage.var_dir / "admin-password"


def _read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = getpass.getpass("New admin password: ")
    second = getpass.getpass("Repeat it: ")
    if first != second:
        raise ValueError("the two passwords differ")
    return first


def passwd_main(argv: Sequence[str] | None = None) -> int:
    """``smartpdu passwd [--config FILE | --file PATH] [--password-stdin]``: set the web
    interface's admin password (stored as a salted scrypt hash, mode 0600)."""
    parser = argparse.ArgumentParser(
        prog="smartpdu passwd",
        description="Set the admin password of the web interface (needed to rename units "
        "and channels and to set channel supervision).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", help="service config file (its web.admin_password_file)")
    where.add_argument("--file", help="write this password file instead")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        path = Path(args.file) if args.file else _password_file_from_config(args.config)
        password = _read_new_password(args.password_stdin)
        written = write_password_file(path, password)
    except (ValueError, OSError) as exc:
        print(f"smartpdu passwd: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # names the key at fault in one line
        print(f"smartpdu passwd: {exc.line}", file=sys.stderr)
        return 1
    print(f"admin password saved in {written}")
    return 0


if __name__ == "__main__":
    sys.exit(passwd_main())
