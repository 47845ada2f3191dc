"""Tokens where code takes them outside azure-core pipelines: a token-provider callable, a ``requests`` auth.

``get_bearer_token_provider`` has azure-identity's contract: ``(credential, *scopes) -> Callable[[], str]``, any
azure-core ``TokenProvider`` accepted, the token requested lazily at the first call and an error raised from the
call, not from construction. azure-identity runs each call through azure-core's ``BearerTokenCredentialPolicy``
against a throwaway request; for any credential but ours, so does this one. For our credential with its one scope,
a call reads the credential's token cache directly (a dict lookup and a clock read, returning the cached string)
and falls back to ``get_token_info`` when the token is missing or due for refresh.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import SplitResult, urlsplit

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

if TYPE_CHECKING:
    from azure.core.credentials import TokenProvider

    from ._engine.cache import CacheEntry

    CacheReader = tuple[Callable[[str], Optional[CacheEntry]], Callable[[], float], str]

_LOGGER = logging.getLogger("msi_credential")


def get_bearer_token_provider(credential: TokenProvider, *scopes: str) -> Callable[[], str]:
    """A callable that returns a bearer token for ``scopes``: azure-identity's ``get_bearer_token_provider``.

    For example ``AzureOpenAI(azure_ad_token_provider=get_bearer_token_provider(credential,
    "https://cognitiveservices.azure.com/.default"))``; or ``headers["Authorization"] = "Bearer " + provider()``.
    """
    from ._credential import ManagedIdentityCredential

    fast = _cache_reader(credential, scopes, ManagedIdentityCredential)
    if fast is not None:
        bucket_get, clock, scope = fast
        get_token_info = credential.get_token_info  # type: ignore[union-attr]

        def provider() -> str:
            entry = bucket_get(scope)
            if entry is not None and clock() < entry.refresh_on:
                return entry.info.token
            info = get_token_info(scope)
            return info.token

        return provider
    return _policy_provider(credential, scopes)


def _cache_reader(credential: object, scopes: tuple[str, ...], face: type) -> Optional[CacheReader]:
    """(bucket.get, clock, scope) when calls may read this credential's cache: our own class with its token methods
    as they are (a subclass that overrides them is called like any other credential) and one string scope."""
    if type(credential) is not face and not (
        isinstance(credential, face) and type(credential).get_token_info is face.get_token_info  # type: ignore[attr-defined]
    ):
        return None
    if len(scopes) != 1 or not isinstance(scopes[0], str):
        return None  # the credential raises its ValueError from the call, as azure-identity's provider would
    bucket = credential._bucket  # type: ignore[attr-defined]
    return bucket.get, credential._clock, scopes[0]  # type: ignore[attr-defined]


def _policy_provider(credential: TokenProvider, scopes: tuple[str, ...]) -> Callable[[], str]:
    """What azure-identity does: azure-core's policy authorizes a throwaway request; the header is the answer."""
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    policy: BearerTokenCredentialPolicy[Any, Any] = BearerTokenCredentialPolicy(credential, *scopes)

    def provider() -> str:
        request = PipelineRequest(HttpRequest("CredentialWrapper", "https://fakeurl"), PipelineContext(None))
        policy.on_request(request)
        header: str = request.http_request.headers["Authorization"]
        return header[len("Bearer ") :]

    return provider


# ---------------------------------------------------------------------------------------------- requests

# Challenges are read by a scanner that only moves forward through the value (each character is read a bounded
# number of times), never by a regular expression: however a header is built, parsing it takes time linear in its
# length. A value over MAX_CHALLENGE_CHARS is not read at all: real challenges are far shorter (a CAE claims
# challenge is a few hundred characters) and common servers cap a whole header line at about 8 KiB.
MAX_CHALLENGE_CHARS = 8192
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SPACE = frozenset(" \t\r\n")
_SPACE_OR_COMMA = _SPACE | {","}


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """The challenges of a ``WWW-Authenticate`` value: [(scheme lower-cased, {parameter lower-cased: value})].

    Several challenges may share one header (``Bearer a="1", b="2", Basic realm="x"``); quoted values may hold
    commas and backslash escapes. Anything it cannot read ends the parse (what was read stays). A value longer than
    ``MAX_CHALLENGE_CHARS`` is not a usable challenge: the answer is ``[]``. Time is linear in the length.
    """
    end = len(header)
    if end > MAX_CHALLENGE_CHARS:
        return []

    def skip(at: int, chars: frozenset[str]) -> int:
        while at < end and header[at] in chars:
            at += 1
        return at

    challenges: list[tuple[str, dict[str, str]]] = []
    position = 0
    while True:
        start = skip(position, _SPACE_OR_COMMA)  # empty list elements are allowed (RFC 9110 section 5.6.1)
        name_end = skip(start, _TOKEN_CHARS)
        if name_end == start or (name_end < end and header[name_end] not in _SPACE_OR_COMMA):
            return challenges  # the end, or something that is not an auth-scheme
        params: dict[str, str] = {}
        challenges.append((header[start:name_end].lower(), params))
        position = name_end
        while (
            True
        ):  # the challenge's auth-params, until a token that is not followed by "=" (the next scheme)
            start = skip(position, _SPACE_OR_COMMA)
            name_end = skip(start, _TOKEN_CHARS)
            equals = skip(name_end, _SPACE)
            if name_end == start or equals == end or header[equals] != "=":
                position = start
                break
            value_start = skip(equals + 1, _SPACE)
            if value_start < end and header[value_start] == '"':
                chars: list[str] = []
                at = value_start + 1
                while at < end and header[at] != '"':
                    if header[at] == "\\" and at + 1 < end:
                        at += 1  # a quoted-pair: the next character as it is
                    chars.append(header[at])
                    at += 1
                if at == end:
                    return challenges  # an unterminated quoted string
                value = "".join(chars)
                value_end = at + 1
            else:
                value_end = value_start
                while value_end < end and header[value_end] not in _SPACE_OR_COMMA:
                    value_end += 1
                value = header[value_start:value_end]
            position = skip(value_end, _SPACE)
            if position < end and header[position] != ",":
                return challenges  # something after a value that does not separate it from the next
            params[header[start:name_end].lower()] = value


def claims_from_challenge(header: Optional[str]) -> Optional[str]:
    """The claims of a CAE ``insufficient_claims`` Bearer challenge, base64-decoded; None for any other header."""
    if not header:
        return None
    for scheme, params in parse_challenges(header):
        if scheme != "bearer" or params.get("error") != "insufficient_claims":
            continue
        encoded = params.get("claims", "").strip()
        if not encoded:
            return None
        try:
            decoded = base64.urlsafe_b64decode(
                encoded.replace("+", "-").replace("/", "_") + "=" * (-len(encoded) % 4)
            ).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        return decoded if decoded.strip() else None
    return None


class ManagedIdentityAuth(AuthBase):
    """``session.auth = ManagedIdentityAuth(credential, scope)``: a bearer token on every request.

    The header comes from the credential's cache (see ``get_bearer_token_provider``). A 401 whose
    ``WWW-Authenticate`` is a CAE claims challenge (``Bearer ... error="insufficient_claims", claims="<base64>"``)
    gets a fresh token with those claims and the request is sent once more, unless its body is a stream that cannot
    be replayed (then the 401 is returned); a ``WWW-Authenticate`` over ``MAX_CHALLENGE_CHARS`` (8 KiB) is not read
    and its 401 is returned. Nothing here logs or repeats the token.

    The token goes only over TLS, as with azure-core's ``BearerTokenCredentialPolicy``: a request to an ``http://``
    URL raises ``azure.core.exceptions.ServiceRequestError`` before any token is fetched or anything is sent. For
    local development, plain http to a loopback host (``localhost``, 127.0.0.0/8, ``::1``) is allowed.
    """

    def __init__(self, credential: TokenProvider, scope: str) -> None:
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError("scope must be a non-empty string, e.g. 'https://management.azure.com/.default'")
        method = getattr(credential, "get_token_info", None) or getattr(credential, "get_token", None)
        if method is None:
            raise TypeError("credential must have get_token or get_token_info (an azure-core TokenProvider)")
        if inspect.iscoroutinefunction(method):
            raise TypeError(
                "requests is synchronous: pass msi_credential.ManagedIdentityCredential, not the aio one"
            )
        self._credential = credential
        self._scope = scope
        from ._credential import ManagedIdentityCredential

        if _cache_reader(credential, (scope,), ManagedIdentityCredential) is not None:
            # Our credential: its cache holds the token a claims challenge replaced, so read it every time.
            self._token = get_bearer_token_provider(credential, scope)
        else:
            # Others cache for themselves; a policy's own copy would outlive a token the challenge revoked.
            self._token = self._fresh

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scope={self._scope!r})"

    def _fresh(self, claims: Optional[str] = None) -> str:
        credential: Any = self._credential
        if hasattr(credential, "get_token_info"):
            options = {"claims": claims} if claims else None
            return str(credential.get_token_info(self._scope, options=options).token)
        if claims:
            return str(credential.get_token(self._scope, claims=claims).token)
        return str(credential.get_token(self._scope).token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")  # read once: the TLS rule and the challenge's origin
        _require_tls(url)
        request.headers["Authorization"] = "Bearer " + self._token()
        body = request.body
        position: Optional[int] = None
        if body is not None and not isinstance(body, (bytes, str)):
            try:
                position = body.tell()
            except (AttributeError, OSError):
                position = None  # a generator or a pipe: not replayable
        retry = _ChallengeRetry(self, position, (url.scheme.lower(), url.netloc.lower()))
        request.register_hook("response", retry)  # type: ignore[no-untyped-call]
        return request


class _ChallengeRetry:
    """The response hook of one request: answer one claims challenge, once."""

    __slots__ = ("_auth", "_origin", "_position", "_used")

    def __init__(self, auth: ManagedIdentityAuth, position: Optional[int], origin: tuple[str, str]) -> None:
        self._auth = auth
        self._position = position
        self._origin = origin  # where the token was meant to go
        self._used = False

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or self._used:
            return response
        if _origin(response.request.url) != self._origin:
            # a redirect elsewhere: requests dropped our header there, and no token follows it on a challenge
            return response
        header = response.headers.get("WWW-Authenticate")
        if header is not None and len(header) > MAX_CHALLENGE_CHARS:
            _LOGGER.debug(
                "401 from %s: its WWW-Authenticate is over %d characters, not read as a challenge; "
                "the 401 is returned",
                _host(response.request.url),
                MAX_CHALLENGE_CHARS,
            )
            return response
        claims = claims_from_challenge(header)
        if claims is None:
            return response
        self._used = True
        original = response.request
        replay = original.copy()
        body = original.body
        if body is not None and not isinstance(body, (bytes, str)):
            seek = getattr(body, "seek", None)
            if self._position is None or seek is None:
                _LOGGER.debug(
                    "claims challenge from %s not answered: the request body is a stream that cannot be replayed",
                    _host(original.url),
                )
                return response
            try:
                seek(self._position)
            except OSError:
                return response
        token = self._auth._fresh(claims)
        _LOGGER.debug(
            "claims challenge from %s: sending the request once more with a fresh token", _host(original.url)
        )
        response.content  # noqa: B018 - read the 401 so its connection goes back to the pool
        response.close()
        jar = getattr(replay, "_cookies", None)
        if jar is not None:  # cookies the 401 set go along, as requests' own digest auth does
            extract_cookies_to_jar(jar, original, response.raw)  # type: ignore[no-untyped-call]
            replay.prepare_cookies(jar)
        replay.headers["Authorization"] = "Bearer " + token
        connection: Any = getattr(response, "connection")  # noqa: B009 - set by requests' adapter, not typed
        retried: requests.Response = connection.send(replay, **kwargs)
        retried.history.append(response)
        retried.request = replay
        return retried


def _require_tls(parts: SplitResult) -> None:
    """Raise azure-core's ServiceRequestError unless the URL is https, or http to a loopback host."""
    if parts.scheme.lower() == "https":
        return
    if parts.scheme.lower() == "http" and _is_loopback(parts.hostname):
        return
    from azure.core.exceptions import ServiceRequestError

    raise ServiceRequestError(
        "Bearer token authentication is not permitted for non-TLS protected (non-https) URLs: "
        f"refused to send a token to {parts.scheme or 'no scheme'}://{parts.hostname or ''} "
        "(plain http is allowed only to localhost, 127.0.0.0/8 and ::1)"
    )


def _is_loopback(host: Optional[str]) -> bool:
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: Optional[str]) -> tuple[str, str]:
    parts = urlsplit(url or "")
    return parts.scheme.lower(), parts.netloc.lower()


def _host(url: Optional[str]) -> str:
    return urlsplit(url or "").netloc.rpartition("@")[2] or "the server"  # never the user info
