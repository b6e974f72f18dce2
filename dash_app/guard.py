"""Who may use the running explorer: the Host header always, a token when one is set.

Why the Host header: the server binds loopback, yet a web page in the user's own
browser can still reach it by DNS rebinding. Its name (``evil.example``) is made to
resolve to 127.0.0.1, the browser then treats the server's answers as that page's own,
and the page reads the data and posts callbacks (the SQL console, label writes). The
name the browser used travels in every request's ``Host`` header, so a server that
answers only to the names it is really reached by (the loopback names, the bound
address, ``--allowed-host``) turns such a page away before anything runs. When bound to
every interface (``0.0.0.0``, ``::``) an address typed as the host (``192.0.2.7:8050``)
is admitted too: a browser sends an address as the Host only when the user typed it,
never after a rebinding, and the machine's addresses are not known in advance.

Why a token: on a non-loopback bind anyone on the network can connect, and writes
whatever Host header they like. ``factorscope serve --token`` (or the environment
variable :data:`TOKEN_ENV`) makes every request carry it: once as ``?token=`` (the link
printed at start), which answers with an HttpOnly, SameSite=Strict cookie and moves on
to the page without the token in its address, then the cookie; scripts send
``Authorization: Bearer TOKEN``. A cross-site page never gets the cookie sent, so the
token also stops a page that knows the server's address from posting to it.

:class:`Guard` is one WSGI middleware around Flask's ``wsgi_app`` (:func:`protect`),
so it stands in front of every route Dash adds (pages, ``_dash-update-component``,
assets, Dash's own scripts, dev-tools routes), under waitress and under the
development server alike. The Werkzeug debugger of ``--debug`` sits outside Flask's
``wsgi_app``; its console and PIN routes check the Host against loopback themselves, and
a traceback page only follows a request that passed the guard.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from factorscope.errors import InputError
from factorscope.limits import SERVE_TOKEN_MIN_CHARS

log = logging.getLogger(__name__)

TOKEN_ENV = "FACTORSCOPE_TOKEN"
"""The environment variable ``factorscope serve`` reads its token from (no ``--token``):
unlike a flag, it does not show in the process list."""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
"""The names a loopback server answers to (with or without the port)."""

COOKIE_PREFIX = "factorscope_token_"
"""The token cookie is this plus the server's port: cookies are shared by every port of
a host, and two servers with different tokens on one machine must not evict each other's."""

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TOKEN_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_COOKIE_SALT = b"factorscope token cookie"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _normal_name(name: str) -> str | None:
    """``name`` (a host name, an IPv4 address, or an IPv6 one with or without brackets)
    lower-cased and in its one spelling; None when it is none of those."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        address = _ip(name[1:-1])
        return str(address) if isinstance(address, ipaddress.IPv6Address) else None
    address = _ip(name)
    if address is not None:
        return str(address)
    name = name.removesuffix(".")
    if len(name) > 253 or not _HOSTNAME.fullmatch(name):
        return None
    return name


def host_name(header: str | None) -> str | None:
    """The name in a ``Host`` header (port dropped, lower-cased); None when malformed.

    ``127.0.0.1:8050`` -> ``127.0.0.1``, ``[::1]:8050`` -> ``::1``; a bare IPv6 address, a
    port that is not a number, a path or a space make it malformed.
    """
    if not header:
        return None
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[: end + 1], header[end + 1 :]
    else:
        name, _, port = header.partition(":")
        rest = f":{port}" if port or header.endswith(":") else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    return _normal_name(name)


def is_wildcard(bind: str) -> bool:
    """Whether ``bind`` means every interface of the machine (``0.0.0.0``, ``::``)."""
    address = _ip(bind.strip("[]"))
    return bind.strip() == "" or (address is not None and address.is_unspecified)


def bind_is_loopback(bind: str) -> bool:
    """Whether a server bound to ``bind`` can be reached from this machine only."""
    if is_wildcard(bind):
        return False
    name = _normal_name(bind)
    if name is None:
        return False
    address = _ip(name)
    if address is not None:
        return address.is_loopback
    if name == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = [_ip(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return bool(addresses) and all(a is not None and a.is_loopback for a in addresses)


def allowed_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """``--allowed-host`` values (repeated, or comma-separated) as names; InputError if one
    is not a host name or an address (a scheme, port, path or wildcard is refused)."""
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = _normal_name(part)
            if name is None:
                raise InputError(
                    f"--allowed-host {value!r} is not a host name or address: give a name "
                    "such as box.lan or an address such as 192.0.2.7, without scheme, port "
                    "or path (several: --allowed-host a,b or the flag again)"
                )
            names.append(name)
    return tuple(dict.fromkeys(names))


def check_token(token: str, source: str) -> str:
    """``token`` if it can serve as one; InputError naming ``source`` (the flag or the
    environment variable it came from) when it is empty, short or has spaces."""
    advice = "python -c 'import secrets; print(secrets.token_urlsafe())' makes one"
    if not token:
        raise InputError(
            f"{source} is empty: give a token of at least {SERVE_TOKEN_MIN_CHARS} "
            f"characters ({advice})"
        )
    if not _TOKEN_CHARS.fullmatch(token):
        raise InputError(
            f"{source} may hold only printable ASCII letters, digits and punctuation, "
            f"no spaces ({advice})"
        )
    if len(token) < SERVE_TOKEN_MIN_CHARS:
        raise InputError(
            f"{source} is {len(token)} characters long: a token needs at least "
            f"{SERVE_TOKEN_MIN_CHARS}, so that it cannot be guessed ({advice})"
        )
    return token


def display_host(bind: str, allowed: Iterable[str] = ()) -> str:
    """The host part of a URL a user can open for a server bound to ``bind``."""
    if is_wildcard(bind):
        first = next(iter(allowed), None)
        name = first or ("::1" if ":" in bind else "127.0.0.1")
    else:
        name = _normal_name(bind) or bind
    return f"[{name}]" if ":" in name else name


@dataclass(frozen=True)
class Access:
    """What the guard admits: the Host names, any address (a wildcard bind), a token."""

    hosts: frozenset[str] = LOOPBACK_NAMES
    any_address: bool = False
    token: str | None = None

    @classmethod
    def for_bind(
        cls, bind: str, *, allowed: Iterable[str] = (), token: str | None = None
    ) -> Access:
        """What a server bound to ``bind`` admits: the loopback names, ``allowed``, the
        bound name or address itself (any address when bound to all interfaces).

        A bind other than loopback without a token is refused (InputError): the data,
        the label writes and the SQL console would be open to the whole network.
        """
        if token is None and not bind_is_loopback(bind):
            raise InputError(
                f"--host {bind} makes the explorer (its data, labels and SQL console) "
                f"reachable from the network: give --token TOKEN or set {TOKEN_ENV} "
                "(every request must then carry it), or serve on 127.0.0.1"
            )
        hosts = set(LOOPBACK_NAMES) | set(allowed_hosts(allowed))
        wildcard = is_wildcard(bind)
        if not wildcard and _normal_name(bind) is not None:
            hosts.add(str(_normal_name(bind)))
        return cls(hosts=frozenset(hosts), any_address=wildcard, token=token)

    def admits_host(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header may be answered."""
        name = host_name(header)
        if name is None:
            return False
        return name in self.hosts or (self.any_address and _ip(name) is not None)


def _cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself is not stored
    in the browser's cookie jar and any token fits a cookie's character set."""
    return hmac.new(token.encode(), _COOKIE_SALT, hashlib.sha256).hexdigest()


def _same(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected)


def _cookies(environ: dict[str, Any]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, eq, value = part.strip().partition("=")
        if eq:
            jar.setdefault(name, value.strip().strip('"'))
    return jar


class Guard:
    """WSGI middleware: answers a refused request itself (plain text) and calls the app
    only for requests whose Host is admitted and that carry the token, if one is set."""

    def __init__(self, app: WsgiApp, access: Access) -> None:
        self.app = app
        self.access = access
        self._token = access.token.encode() if access.token else None
        self._cookie = _cookie_value(access.token).encode() if access.token else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        host = environ.get("HTTP_HOST")
        if host_name(host) is None:
            return _refuse(start_response, "400 Bad Request", "refused: no valid Host header")
        if not self.access.admits_host(host):
            log.info("refused a request for Host %r", host)
            return _refuse(
                start_response,
                "403 Forbidden",
                f"refused: this server does not answer to the Host {host[:80]!a} "
                "(`factorscope serve --allowed-host NAME` admits a name)",
            )
        if self._token is None:
            return self.app(environ, start_response)
        return self._with_token(environ, start_response)

    def _with_token(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self._token is not None and self._cookie is not None
        cookie_name = COOKIE_PREFIX + str(environ.get("SERVER_PORT", ""))
        pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        query = [value for key, value in pairs if key == "token"]
        scheme, _, bearer = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        bearers = [bearer.strip()] if scheme.lower() == "bearer" and bearer.strip() else []
        cookie = _cookies(environ).get(cookie_name)
        right = [t for t in (*query, *bearers) if _same(t, self._token)]
        if right and query and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return _landing(environ, start_response, cookie_name, self._cookie.decode())
        if right or (cookie is not None and _same(cookie, self._cookie)):
            return self.app(environ, start_response)
        if query or bearers or cookie is not None:
            return _refuse(start_response, "403 Forbidden", "refused: wrong token")
        return _refuse(
            start_response,
            "401 Unauthorized",
            "refused: this server asks for a token: open the link `factorscope serve` "
            "printed (…/?token=…) or send Authorization: Bearer TOKEN",
            [("WWW-Authenticate", 'Bearer realm="factorscope"')],
        )


def _refuse(
    start_response: Callable[..., Any],
    status: str,
    reason: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = (reason + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ],
    )
    return [body]


def _landing(
    environ: dict[str, Any], start_response: Callable[..., Any], cookie_name: str, value: str
) -> list[bytes]:
    """Set the cookie and go on to the same address without ``token``.

    A page that moves on by itself (not a 303): after a redirect the browser would
    still count the next request as started by the site the link was on, and send
    no SameSite=Strict cookie with it; the page's own navigation is same-site. The
    token leaves the address bar, so a page's query never sees it either.
    """
    # PATH_INFO is decoded (PEP 3333: its bytes as latin-1); quoted again, and never
    # starting with "//", which a browser would read as another host
    path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    script = environ.get("SCRIPT_NAME", "").strip("/")
    path = "/" + "/".join(part for part in (script, path.lstrip("/")) if part)
    kept = [
        part
        for part in environ.get("QUERY_STRING", "").split("&")
        if part and unquote(part.partition("=")[0]) != "token"
    ]
    target = html.escape(path + ("?" + "&".join(kept) if kept else ""), quote=True)
    body = (
        '<!doctype html><meta charset="utf-8"><title>factorscope</title>'
        f'<meta http-equiv="refresh" content="0; url={target}">'
        f'<p><a href="{target}">Continue to factorscope</a></p>\n'
    ).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Set-Cookie", f"{cookie_name}={value}; Path=/; HttpOnly; SameSite=Strict"),
            ("Cache-Control", "no-store"),
            ("Referrer-Policy", "no-referrer"),
        ],
    )
    return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []


def protect(server: Any, access: Access) -> None:
    """Put a :class:`Guard` with ``access`` in front of the Flask ``server``'s routes."""
    server.wsgi_app = Guard(server.wsgi_app, access)
