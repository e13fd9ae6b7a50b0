"""Credentials never reach a console, a log or MLflow: the one place URIs and messages
that may hold them are cleaned.

    redact_uri("postgresql://u:secret@db/optuna")        -> "postgresql://u:***@db/optuna"
    redact_text("API request to http://u:pw@h/api failed") -> "API request to http://u:***@h/api failed"

Kept free of heavy imports: the CLI uses it to print errors.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "key", "credential", "sig")
# scheme://user:password@  (the password part: anything up to the last @ before the host)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):(?P<password>[^\s/@]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&][^=&\s]*(?:" + "|".join(_SECRET_QUERY_KEYS) + r")[^=&\s]*=)[^&\s#]*",
                           re.IGNORECASE)


def redact_uri(uri: str | None) -> str:
    """A URI safe to print or log: the password of `user:password@` and secret-looking query
    values (password=, token=, ...) become `***`; anything else is left as it is."""
    if not uri:
        return "" if uri is None else uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "***"  # unparsable: print nothing of it rather than a secret
    redacted = uri
    if "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:  # edit the text in place: urlunsplit would turn sqlite:////a into sqlite://a
            redacted = redacted.replace(parts.netloc, f"{user}:***@{host}", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _secret_key(k) else v) for k, v in pairs], safe="*/:")
            redacted = redacted.replace("?" + parts.query, "?" + query, 1)
    return redacted


def redact_text(text: str) -> str:
    """Every URI's password and secret query values inside free text (error messages)."""
    return _QUERY_SECRET.sub(r"\g<key>***", _USERINFO.sub(r"\g<head>:***@", str(text)))


def _secret_key(key: str) -> bool:
    return any(s in key.lower() for s in _SECRET_QUERY_KEYS)
