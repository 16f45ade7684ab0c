"""A key for exposed servers: the bearer-key check, where the key comes from, and which binds need one.

With a key, ``POST /v1/liveness``, ``POST /v1/liveness/batch`` and ``GET /metrics`` answer 401 unless the request
carries ``Authorization: Bearer <key>``; ``/healthz``, ``/readyz``, ``/docs`` and ``/openapi.json`` stay open
(probes must answer without a key, and the API description holds no data). The key comes from ``--api-key-file`` (or
``$LIVENESS_API_KEY_FILE``), or from ``$LIVENESS_API_KEY``, never from the command line, where ``ps`` shows it.
Without a key the server binds loopback only, unless ``--insecure`` says something in front of it guards access.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from liveness.serve.settings import MAX_KEY_CHARS, api_key_problem

API_KEY_ENV = "LIVENESS_API_KEY"
API_KEY_FILE_ENV = "LIVENESS_API_KEY_FILE"
HOW_TO_MAKE_A_KEY = "openssl rand -hex 32 > serve.key && chmod 600 serve.key"
UNAUTHORIZED_RESPONSE: dict[str, Any] = {
    "description": "No valid 'Authorization: Bearer <key>' header (only when the server was started with a key)"}

# auto_error=False: the check below writes the project's own 401 body; the scheme still shows in /docs.
_bearer = HTTPBearer(auto_error=False, description="The key the server was started with")


class ApiKeyError(ValueError):
    """The key cannot be read or used; the message says what to do and never quotes the key."""


def unauthorized(detail: str, *, invalid: bool = False) -> HTTPException:
    # RFC 6750: no error code when credentials are missing, invalid_token when they are wrong.
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def bearer_guard(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: nothing to check without a key, else the request's bearer key must equal ``api_key``."""
    if api_key is None:
        async def open_access() -> None:
            return None

        return open_access
    expected = api_key.encode("ascii")  # ServeSettings made sure it is printable ASCII

    async def require_key(request: Request,
                          credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if credentials is None:
            if "authorization" in request.headers:
                raise unauthorized("the Authorization header must use the Bearer scheme: 'Authorization: Bearer <key>'")
            raise unauthorized("this server needs its API key: send 'Authorization: Bearer <key>'")
        # Header text is latin-1 decoded, so this gives back the bytes that were sent; compare_digest takes the
        # same time wherever the first difference is, so answers do not leak the key one character at a time.
        if not hmac.compare_digest(credentials.credentials.encode("latin-1"), expected):
            raise unauthorized("the bearer key is wrong; send the key the server was started with", invalid=True)

    return require_key


def read_key_file(path: Path) -> str:
    """The key in ``path``, read once at start, surrounding whitespace and the trailing newline stripped."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_KEY_CHARS + 64)  # a bound: a wrong path such as /dev/zero must not fill memory
    except FileNotFoundError:
        raise ApiKeyError(f"API key file {path} does not exist; create one with `{HOW_TO_MAKE_A_KEY}`") from None
    except IsADirectoryError:
        raise ApiKeyError(f"API key file {path} is a directory; pass the file that holds the key") from None
    except PermissionError:
        raise ApiKeyError(f"API key file {path} cannot be read (permission denied); let the user running the "
                        "server read it") from None
    except OSError as error:
        raise ApiKeyError(f"API key file {path} cannot be read ({error.strerror}); check the path") from None
    try:
        key = data.decode("ascii").strip()
    except UnicodeDecodeError:  # its message quotes bytes of the key: say only what is wrong
        key = None
    problem = "it is not ASCII text" if key is None else api_key_problem(key)
    if problem:
        raise ApiKeyError(f"API key file {path}: {problem}; write the key into it, e.g. `{HOW_TO_MAKE_A_KEY}`")
    return key  # type: ignore[return-value]


def loose_permissions(path: Path) -> str | None:
    """A warning when others than the owner may read or change the key file (POSIX modes only), else None."""
    if os.name != "posix":
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return None
    return f"API key file {path} is accessible to group or others (mode {mode:o}); `chmod 600 {path}`"


def resolve_api_key(key_file: Path | None, env_key: str | None) -> str | None:
    """The key from ``--api-key-file``/``$LIVENESS_API_KEY_FILE`` or ``$LIVENESS_API_KEY``; None when neither is set."""
    if key_file is not None and env_key is not None:
        raise ApiKeyError(f"both an API key file and ${API_KEY_ENV} are set; use one (unset ${API_KEY_ENV} or drop "
                        f"--api-key-file/${API_KEY_FILE_ENV})")
    if key_file is not None:
        return read_key_file(key_file)
    if env_key is None:
        return None
    if problem := api_key_problem(env_key.strip()):
        raise ApiKeyError(f"${API_KEY_ENV}: {problem}; set it to the key, or unset it to serve without one")
    return env_key.strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``; another name may be anything."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return address.is_loopback


class ExposedWithoutKey(ValueError):
    """Binding a reachable interface without a key was refused."""


def check_bind(host: str, *, has_key: bool, insecure: bool) -> str | None:
    """Decide, before anything listens, whether the server may bind ``host``.

    Loopback is always allowed. Another interface needs a key, or ``insecure`` (then the answer is a warning to
    print). With a key the answer is a reminder that plain HTTP carries the key unencrypted. None: nothing to say.
    """
    if is_loopback(host):
        return None
    if has_key:
        return (f"binding {host} over plain HTTP: the key and the images cross the network unencrypted; put a "
                "TLS-terminating proxy in front unless the network is trusted")
    if insecure:
        return (f"binding {host} WITHOUT an API key (--insecure): anyone who can reach it may use the model and "
                "read /metrics")
    raise ExposedWithoutKey(
        f"refusing to bind {host} without an API key: anyone who can reach it could use the model. Pass "
        f"--api-key-file FILE (or set ${API_KEY_FILE_ENV} or ${API_KEY_ENV}), bind 127.0.0.1, or pass --insecure "
        "if something in front of the server guards access")
