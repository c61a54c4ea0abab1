"""The API keys: one from the settings, and/or a file of one key per line (a mounted Kubernetes Secret), every
one valid at once so a key can be rotated: add the new one, move the clients, remove the old one.

The file is re-read when it changes (checked at most once a second, on the request path: one ``stat``). A file
that has become empty revokes every key from it; one that is briefly missing (a non-atomic replace) keeps the
last keys. A key is never logged: the access log names the key a request used by its fingerprint, the first
12 hex digits of its unsalted SHA-256 (the same on every replica), which identifies a random key without
revealing it, but would let a guessable key be guessed offline: keys should be random (``openssl rand -hex 32``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Unauthenticated

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

RECHECK_S = 1.0
MISSING = "missing API key: send X-API-Key: <key> or Authorization: Bearer <key> (gRPC: the same metadata)"


def fingerprint(key: str) -> str:
    """What the logs call a key: enough to tell keys apart, useless to guess one."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def presented(metadata: Mapping[str, str]) -> str | None:
    """The key a request presents: ``x-api-key``, else ``authorization: Bearer``; empty counts as none."""
    if key := metadata.get("x-api-key", "").strip():
        return key
    scheme, _, credentials = metadata.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def read_keys(path: Path) -> list[str]:
    """One key per line; blank lines and ``#`` comments are skipped, surrounding whitespace is not part of a key."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class KeyRing:
    """Every valid key, with its fingerprint. `match` compares the presented key with each one in constant time."""

    def __init__(self, keys: list[str], path: Path | None = None, *, recheck_s: float = RECHECK_S) -> None:
        self._fixed = [(k.encode(), fingerprint(k)) for k in keys]
        self._path = path
        self._recheck_s = recheck_s
        self._lock = threading.Lock()
        self._from_file: list[tuple[bytes, str]] = []
        self._seen: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._unreadable = False  # said once per outage, not once a second
        if path is not None:
            self._reload(initial=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing | None:
        """None when no key is configured (the API is open). A key file that cannot be read, or holds no key,
        stops start-up (ValueError): a typo must not leave the server open or closed to everyone."""
        keys = [settings.api_key.get_secret_value()] if settings.api_key is not None else []
        if settings.api_key_file is None:
            return cls(keys) if keys else None
        return cls(keys, settings.api_key_file)

    def count(self) -> int:
        """How many keys are valid now (not __len__: an empty ring must never read as "no keys configured")."""
        self._maybe_reload()
        return len(self._fixed) + len(self._from_file)

    def match(self, key: str | None) -> str | None:
        """The fingerprint of the valid key equal to `key`, else None."""
        if not key:
            return None
        self._maybe_reload()
        supplied, found = key.encode(), None
        for expected, name in (*self._fixed, *self._from_file):
            if hmac.compare_digest(supplied, expected) and found is None:  # every key compared: no early exit
                found = name
        return found

    def check(self, key: str | None) -> str:
        """The fingerprint of a valid key, or Unauthenticated (401, UNAUTHENTICATED)."""
        if not key:
            raise Unauthenticated(MISSING)
        if (found := self.match(key)) is None:
            raise Unauthenticated("wrong API key")
        return found

    def identify(self, metadata: Mapping[str, str]) -> str | None:
        """For the access log: which key a request used, by fingerprint (None: none, or not a valid one)."""
        return self.match(presented(metadata))

    def _maybe_reload(self) -> None:
        if self._path is None or time.monotonic() < self._next_check:
            return
        with self._lock:
            if time.monotonic() >= self._next_check:
                self._reload()

    def _reload(self, *, initial: bool = False) -> None:
        assert self._path is not None
        self._next_check = time.monotonic() + self._recheck_s
        try:
            stat = os.stat(self._path)
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature == self._seen:
                return
            keys = read_keys(self._path)
        except (OSError, UnicodeDecodeError) as exc:
            if initial:
                raise ValueError(f"api_key_file {self._path} cannot be read: {exc}") from exc
            if not self._unreadable:
                log.warning("API key file %s cannot be read (%s): keeping the last %d key(s)", self._path, exc,
                            len(self._from_file))  # fmt: skip
                self._unreadable = True
            return
        self._unreadable = False
        if initial and not keys and not self._fixed:
            raise ValueError(f"api_key_file {self._path} holds no key (one per line; # starts a comment)")
        self._seen = signature
        self._from_file = [(k.encode(), fingerprint(k)) for k in keys]
        if not initial:
            log.info("API key file %s re-read: %d key(s) (%s)", self._path, len(keys),
                     ", ".join(name for _, name in self._from_file) or "none: every request is refused")  # fmt: skip
