"""Passwords in URLs never reach a log line, an error message or ``status`` output."""

from __future__ import annotations

import re

__all__ = ["MASK", "mask_secrets"]

MASK = "***"

# scheme://user:password@host — the password ends at the last "@" before the host part,
# so that a password containing "@" or ":" is masked whole.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)[^\s/?#]*(?=@)")


def mask_secrets(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` URL in ``text``."""
    return _URL_PASSWORD.sub(lambda match: match.group("head") + MASK, text)
