"""Object stores through one library, fsspec, for everything that reads or writes them: the model repository,
batch scoring's inputs and outputs, and the payload log.

fsspec rather than obstore: it is the interface Ray Data, pyarrow and pandas already take, and each backend (s3fs,
gcsfs, adlfs) brings its cloud's standard credential chain (environment, profile, instance or workload identity).
Nothing here reads a key, and no URI reaches a log with a user or password in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

# Each backend's own retries, kept short: an unreachable store must show as such within a poll or two.
_OPTIONS: dict[str, dict[str, Any]] = {
    "s3": {"config_kwargs": {"connect_timeout": 3, "read_timeout": 30, "retries": {"max_attempts": 2}}},
}
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


def is_uri(location: object) -> bool:
    """A location for fsspec; a plain path or ``file://`` stays on local disk (with its atomic renames)."""
    return isinstance(location, str) and "://" in location and not location.lower().startswith("file://")


def redact(uri: str) -> str:
    """The URI without any user or password in it, for logs and messages."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def open_filesystem(uri: str, what: str) -> tuple[AbstractFileSystem, str]:
    """(filesystem, root path without a trailing slash) for a URI. Listings are never cached: every poll must see
    the store as it is. ValueError naming `what` and the fix when the URI's backend is missing or refuses it."""
    import fsspec

    display = redact(uri)
    protocol = uri.split("://", 1)[0].lower()
    options = {"use_listings_cache": False, "skip_instance_cache": True, **_OPTIONS.get(protocol, {})}
    try:
        fs, root = fsspec.core.url_to_fs(uri, **options)
    except ImportError as exc:
        extra = EXTRAS.get(protocol, protocol)
        raise ValueError(f"{what} {display}: {protocol}:// needs its fsspec backend, which is not installed: "
                         f"pip install 'pixelserve[{extra}]' ({exc})") from None  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} {display}: {protocol}:// cannot be used here ({exc})") from None
    return fs, root.rstrip("/")
