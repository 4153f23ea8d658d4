"""Secrets out of everything archiverd prints: one function, `redact(text)`.

It is applied to every value that reaches a log line, an error message, `status` or `config`. Two
layers, because either alone misses cases:

1. Structure: every `mongodb://` / `mongodb+srv://` URI (or any other `scheme://`) in the text
   loses its password (even one
   written with an unescaped `/`, `@`, `?` or `#`: the user info is taken to end at the LAST `@`
   before the host list, so a malformed password is over-redacted, never shown), the values of
   sensitive options (any name containing password, secret, token or credential, and the
   non-descriptive properties of authMechanismProperties such as AWS_SESSION_TOKEN), and a
   non-numeric "port" (what a password becomes when the host was left out: `mongodb://user:pw`).
   Outside a well-formed URI, `user:password@host` loses its password too.
2. Known secrets: every secret found in a URI that archiverd was configured with is remembered
   (as written and percent-decoded) and masked wherever it shows up later -- for example in a
   driver error that quotes a malformed option value without the URI around it.

Over-redaction is accepted; showing a secret is not.
"""
from __future__ import annotations

import re
import threading
from urllib.parse import unquote, unquote_plus

MASK = "***"
_SCHEME = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://")  # mongodb://, mongodb+srv://, or any other
_HOST_LIST = re.compile(r"[A-Za-z0-9._\-\[\]%:,]*")
_OPTION = re.compile(r"(?P<lead>[?&;])(?P<key>[A-Za-z0-9_.\-]+)=(?P<value>[^&;]*)")
_SENSITIVE_KEY = re.compile(r"pass|pwd|secret|token|credential|private", re.IGNORECASE)
# authMechanismProperties entries that describe, rather than authenticate
_PUBLIC_PROPERTIES = {"SERVICE_NAME", "SERVICE_REALM", "SERVICE_HOST", "CANONICALIZE_HOST_NAME", "ENVIRONMENT",
                      "TOKEN_RESOURCE"}
# user:password@host outside a well-formed URI (`mongodb:/u:pw@h`, `u:pw@h`): the password goes
_LOOSE_USERINFO = re.compile(r"(?<![\w.%+~-])(?P<user>[\w.%+~-]+):(?!//)(?P<password>\S+)@(?=[\w\[])")
_MIN_SECRET = 3  # shorter strings are masked only where the URI structure shows them

_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def redact(text: str) -> str:
    """`text` with every password, sensitive URI option and remembered secret replaced by ***."""
    if not isinstance(text, str) or not text:
        return text
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        if match.start() < pos:  # inside a URI already redacted (a URI quoted in an option value)
            continue
        end = _uri_end(text, match.end())
        out.append(text[pos:match.start()])
        out.append(_redact_uri(text[match.start():end], len(match.group(0))))
        pos = end
    out.append(text[pos:])
    result = _LOOSE_USERINFO.sub(lambda m: f"{m.group('user')}:{MASK}@", "".join(out))
    pattern = _known_pattern
    return pattern.sub(MASK, result) if pattern is not None else result


def remember(uri: str) -> None:
    """Keep the secrets in `uri` so they are masked wherever they appear, URI or not."""
    global _known_pattern
    found = {s for s in secrets_in(uri) if len(s) >= _MIN_SECRET}
    if not found - _known:
        return
    with _lock:
        _known.update(found)
        ordered = sorted(_known, key=len, reverse=True)  # longest first: no partial masks
        _known_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def secrets_in(uri: str) -> set[str]:
    """The secret strings of one URI, as written and percent-decoded."""
    match = _SCHEME.match(uri.strip())
    if match is None:
        return set()
    found = _analyse(uri.strip()[match.end():])[1]
    return (found | {unquote(s) for s in found} | {unquote_plus(s) for s in found}) - {""}


def _uri_end(text: str, start: int) -> int:
    """Where a URI that starts in free text ends: at whitespace, or at a quote or closing bracket
    after the last `@` (before it, such characters may belong to a malformed password)."""
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    at = text.rfind("@", start, end)
    opened = ""
    for i in range(max(at + 1, start), end):
        c = text[i]
        if c in "([":
            opened += c
        elif c in "'\"<>" or (c in ")]" and not opened):
            return i
    return end


def _redact_uri(uri: str, scheme_length: int) -> str:
    return uri[:scheme_length] + _analyse(uri[scheme_length:])[0]


def _analyse(rest: str) -> tuple[str, set[str]]:
    """(the URI without its scheme, redacted; the secrets it holds). Sensitive option values are
    masked first, anywhere in the text, so an `@` inside one cannot be taken for the end of the
    user info; then the user info ends at the last `@` left."""
    secrets: set[str] = set()

    def option(m: re.Match[str]) -> str:
        key, value = m.group("key"), m.group("value")
        if key.lower() == "authmechanismproperties":
            props = []
            for prop in value.split(","):
                name, colon, secret = prop.partition(":")
                if colon and secret and name.strip().upper() not in _PUBLIC_PROPERTIES:
                    secrets.add(secret)
                    prop = f"{name}:{MASK}"
                props.append(prop)
            return f"{m.group('lead')}{key}={','.join(props)}"
        if _SENSITIVE_KEY.search(key) and value:
            secrets.add(value)
            return f"{m.group('lead')}{key}={MASK}"
        return m.group(0)

    rest = _OPTION.sub(option, rest)
    shown = ""
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        user, has_password, password = userinfo.partition(":")
        if re.search(r"[/?#@\[\]]", user):  # not a user name: an unescaped password, or worse
            secrets.add(userinfo)
            shown = f"{MASK}@"
        else:
            if has_password:
                secrets.add(password)
            shown = f"{user}:{MASK}@" if has_password else f"{user}@"
    hosts = _HOST_LIST.match(rest).group(0)  # type: ignore[union-attr]  # may match the empty string
    masked_hosts = []
    for host in hosts.split(","):
        name, sep, port = host.rpartition(":")
        if sep and port and not port.isdigit() and "]" not in port:  # `mongodb://user:password`
            secrets.add(port)
            host = f"{name}:{MASK}"
        masked_hosts.append(host)
    return shown + ",".join(masked_hosts) + rest[len(hosts):], secrets
