"""Object-store prefixes and s3:// URIs: the patterns the stage contracts check, and their parts."""

from __future__ import annotations

from urllib.parse import urlsplit

# An object-store prefix: '/'-separated names, each starting with a letter, digit or '_' (so no
# '.' or '..' segment and nothing absolute).
PREFIX_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"
# s3://<bucket>/<key>: a DNS-style bucket name, and a key that PREFIX_PATTERN accepts.
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/" + PREFIX_PATTERN.removeprefix("^")


def s3_bucket(uri: str) -> str:
    return urlsplit(uri).netloc


def s3_key(uri: str) -> str:
    return urlsplit(uri).path.removeprefix("/")
