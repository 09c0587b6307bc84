"""Showing URLs without their secrets: every log line, error and ``--help`` goes through here.

>>> masked_url("mqtt://ingest:s3cret@broker:1883")
'mqtt://ingest:***@broker:1883'
>>> url_origin("https://hooks.example.com/services/T000/B000/XXXX?token=abc")
'https://hooks.example.com'
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

# user:password@ in any scheme://…, also in text too broken for urlsplit (bad port, spaces).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^@\s]*@")


def masked_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; everything else kept."""
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url)


def url_origin(url: str) -> str:
    """Scheme and host (and port) only: for URLs whose path or query may carry a token,
    such as webhooks. Text that is not a URL becomes ``<invalid URL>``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.hostname:
        return "<invalid URL>"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (error messages of
    libraries that echo what they were given)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return masked_url(text)
