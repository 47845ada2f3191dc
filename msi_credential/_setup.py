"""Constructor work shared by both credential faces: argument checks, detection, engine options."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._engine.scopes import resource_from_scopes
from ._observe import TokenTrace
from ._source import ManagedIdentitySource

if TYPE_CHECKING:
    from ._engine.flow import Engine
    from ._engine.retry import RetrySettings

DEFAULT_TIMEOUT = 120.0  # seconds a get_token call may take in all, unless timeout= says otherwise

# The engine, azure-core and the transports load at construction, not at ``import msi_credential``:
# an application that imports the package without using it (or before it needs it) pays nothing.


class CredentialBase:
    """What both faces share: construction, the detected source, a repr without secrets."""

    _driver: Any  # the face's SyncDriver or AsyncDriver
    _single_flight: Callable[..., Any]  # the face's single-flight around a cache miss
    _serve: Callable[..., Any]  # the face's "return the cached token, maybe starting a refresh beside it"

    def __init__(
        self,
        *,
        client_id: Optional[str] = None,
        identity_config: Optional[Mapping[str, Any]] = None,
        object_id: Optional[str] = None,
        resource_id: Optional[str] = None,
        client_capabilities: Optional[Iterable[str]] = None,
        share_cache: bool = True,
        machine_cache: Optional[bool] = None,
        **kwargs: Any,
    ) -> None:
        if client_capabilities is not None and not isinstance(client_capabilities, str):
            client_capabilities = tuple(client_capabilities)  # read once: it may be a generator
        self._arguments = _picklable_arguments(
            client_id=client_id,
            identity_config=identity_config,
            object_id=object_id,
            resource_id=resource_id,
            client_capabilities=client_capabilities,
            share_cache=share_cache,
            kwargs=kwargs,
        )
        if self._arguments is not None:
            self._arguments["machine_cache"] = machine_cache
        sleep = kwargs.pop("_sleep", None)
        self._engine = build_engine(
            client_id=client_id,
            object_id=object_id,
            resource_id=resource_id,
            identity_config=identity_config,
            client_capabilities=client_capabilities,
            share_cache=share_cache,
            machine_cache=machine_cache,
            kwargs=kwargs,
        )
        self._bucket = self._engine.bucket
        self._clock = self._engine.clock
        # The hot path, both faces: a dict lookup and a clock read (cache.hit_reader), bound once here.
        self._hit = self._engine.hit
        self._join_limit = _join_limit(self._engine)
        check_pipeline_keywords(kwargs)
        self._start_driver(sleep, kwargs)

    def _start_driver(self, sleep: Any, kwargs: dict[str, Any]) -> None:
        """Each face builds its driver (sync or async) from the remaining pipeline keywords."""
        raise NotImplementedError

    @property
    def source(self) -> ManagedIdentitySource:
        """The hosting environment detected at construction."""
        return self._engine.source

    def _prepare(self, scopes: tuple[str, ...], claims: object) -> tuple[str, Optional[str]]:
        """Validate a cache miss's arguments: the resource, and claims (empty claims count as none)."""
        resource = resource_from_scopes(scopes)
        if claims is not None and not isinstance(claims, str):
            raise ValueError("claims must be a string (the claims challenge)")
        return resource, (claims if claims and claims.strip() else None)

    def _plan(self, scopes: tuple[str, ...], claims: object) -> tuple[TokenTrace, Callable[[], Any]]:
        """A cache miss, for both faces: the DEBUG trace of where the token came from, and the call that gets it.

        The engine decides (``Engine.serve``): a token that may still be served is returned at once, and when it
        is due its refresh runs beside the caller (the driver's ``refresh_beside``: a thread, or a task of the
        running loop); otherwise the engine's flow is run by this face's driver, single-flight unless claims
        force a request. The sync face calls what this returns, the async face awaits it."""
        resource, checked_claims = self._prepare(scopes, claims)
        engine, driver = self._engine, self._driver
        trace = TokenTrace(engine, resource, checked_claims)
        in_chain = called_from_credential_chain()
        if checked_claims is not None:
            return trace, lambda: driver.run(
                trace.watch(engine.acquire(resource, checked_claims, in_chain=in_chain))
            )
        cached, refresh = engine.serve(resource)
        if cached is not None:
            trace.served(refresh)
            return trace, lambda: self._serve(
                self._bucket,
                resource,
                cached,
                (lambda: engine.acquire(resource, in_chain=in_chain)) if refresh else None,
            )
        return trace, lambda: self._single_flight(
            self._bucket,
            resource,
            lambda: driver.run(trace.watch(engine.acquire(resource, in_chain=in_chain))),
            lambda: trace.still_valid(lambda: engine.still_valid(resource)),
            self._join_limit,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its arguments: the copy detects its own environment where it is unpickled, with its own
        cache, connections and locks. No token, secret, socket or lock travels."""
        if self._arguments is None:
            raise TypeError(
                "a credential built with transport= cannot be pickled (a transport holds connections); "
                "build the credential, with its transport, in the process that uses it"
            )
        return (_rebuild_credential, (type(self), self._arguments))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source.value!r}, "
            f"identity={self._engine.identity.describe()!r})"
        )


def called_from_credential_chain() -> bool:
    """Whether this call comes from azure-identity's ChainedTokenCredential or DefaultAzureCredential (sync or
    async): they set the context variable ``within_credential_chain`` of ``azure.identity._internal.utils`` while
    they ask their credentials, and azure-identity's own credential probes IMDS only when it is set. Read only when
    the application imported azure-identity: nothing is imported here, and anything unexpected there means "not in
    a chain". Called on a cache miss only."""
    module = sys.modules.get("azure.identity._internal.utils")
    marker = getattr(module, "within_credential_chain", None)
    if not isinstance(marker, ContextVar):
        return False
    return marker.get(False) is True


def _join_limit(engine: Engine) -> Any:
    """How long this credential's calls wait for a request another caller already has in flight."""
    from ._transport.flight import JoinLimit

    return JoinLimit(engine.options.retry.deadline, engine.monotonic, engine.source)


def build_engine(
    *,
    client_id: Optional[str],
    object_id: Optional[str],
    resource_id: Optional[str],
    identity_config: Optional[Mapping[str, Any]],
    client_capabilities: Optional[Iterable[str]],
    share_cache: bool,
    kwargs: dict[str, Any],
    machine_cache: Optional[bool] = None,
) -> Engine:
    """Validate arguments, detect the source once, and build the engine. Pops what it uses from kwargs.

    Private keywords (tests and the emulator): ``_environ``, ``_clock`` (the wall clock: expiry), ``_monotonic``
    (deadlines; the injected ``_clock`` when not given, else ``time.monotonic``), ``_random`` (the source of the
    refresh point's spread, numbers in [0, 1)), ``_platform``, ``_path_exists``, ``_arc_key_directory``.
    """
    from ._engine.detection import detect, names_managed_identity
    from ._engine.flow import Engine, EngineOptions
    from ._engine.identity import identity_from_arguments

    identity = identity_from_arguments(
        client_id=client_id,
        object_id=object_id,
        resource_id=resource_id,
        identity_config=identity_config,
    )
    environ: Optional[Mapping[str, str]] = kwargs.pop("_environ", None)
    if environ is None:
        environ = os.environ
    clock: Callable[[], float] = kwargs.pop("_clock", None) or time.time
    # Deadlines run on a monotonic clock; an injected wall clock drives them too unless _monotonic is given.
    monotonic: Callable[[], float] = kwargs.pop("_monotonic", None) or (
        clock if clock is not time.time else time.monotonic
    )
    random: Optional[Callable[[], float]] = kwargs.pop("_random", None)
    if random is None:
        import random as _random_module  # already loaded (tempfile imports it): no import cost

        random = _random_module.random
    config = detect(
        dict(environ),
        platform=kwargs.pop("_platform", None) or sys.platform,
        path_exists=kwargs.pop("_path_exists", None) or os.path.exists,
        arc_key_directory=kwargs.pop("_arc_key_directory", None),
        enable_azure_proxy=_flag(kwargs.pop("enable_azure_proxy", False), "enable_azure_proxy"),
    )
    options = EngineOptions(
        connect_timeout=_timeout(kwargs, "connection_timeout"),
        read_timeout=_timeout(kwargs, "read_timeout"),
        retry=_retry_settings(kwargs),
        capabilities=_capabilities(client_capabilities),
        share_cache=_flag(share_cache, "share_cache"),
        client_request_id=_client_request_id(kwargs),
        chosen_by_environment=names_managed_identity(environ),
        **_machine_cache_options(machine_cache, environ, kwargs),
    )
    return Engine(config, identity, options, clock, monotonic, random)


# The pipeline keywords the drivers take (README, "Keywords"); build_engine has popped the engine's own before.
# logging_enable and additionally_allowed_tenants are taken and change nothing, as documented: the HTTP log is always
# azure-core's HttpLoggingPolicy with the secret headers redacted (bodies, which carry the token, never), and a
# managed identity has no tenant to choose.
PIPELINE_KEYWORDS = frozenset(
    {
        "transport",
        "headers",
        "user_agent",
        "user_agent_overwrite",
        "user_agent_use_env",
        "sdk_moniker",
        "request_id",
        "auto_request_id",
        "request_id_header_name",
        "raw_request_hook",
        "raw_response_hook",
        "logger",
        "http_logging_level",
        "additional_allowed_query_params",
        "connection_verify",
        "connection_cert",
        "proxies",
        "policies",
        "per_call_policies",
        "per_retry_policies",
        "logging_enable",
        "additionally_allowed_tenants",
        "tracing_attributes",
        "network_span_namer",
    }
)
_RETRIES = (
    "msi_credential retries by the rules of each endpoint (docs/protocols.md section 7); it takes retry_total, "
    "retry_backoff_factor, retry_backoff_max and timeout"
)
_NO_REDIRECTS = "redirects are never followed: the identity header would go to wherever a 3xx points"
_NO_PROXIES = (
    "proxies are never used toward managed identity endpoints (the proxy would see the secret); proxies= applies "
    "to workload identity only"
)
# Keywords other azure-core clients take whose meaning we cannot keep: refused, saying why. A value that asks for
# what we do anyway (permit_redirects=False, use_env_settings=False) is taken.
_REFUSED_KEYWORDS = {
    "retry_connect": _RETRIES,
    "retry_read": _RETRIES,
    "retry_status": _RETRIES,
    "retry_mode": _RETRIES,
    "retry_on_status_codes": _RETRIES,
    "retry_policy": _RETRIES,
    "retry_policy_class": _RETRIES,
    "permit_redirects": _NO_REDIRECTS,
    "redirect_max": _NO_REDIRECTS,
    "redirect_policy": _NO_REDIRECTS,
    "use_env_settings": _NO_PROXIES,
    "proxy_policy": _NO_PROXIES,
    "session": "pass transport=RequestsTransport(session=...) or AioHttpTransport(session=...) instead",
    "session_owner": "pass transport=RequestsTransport(session=...) or AioHttpTransport(session=...) instead",
}
_TAKEN_WHEN_FALSE = ("permit_redirects", "use_env_settings")


def check_pipeline_keywords(kwargs: Mapping[str, Any]) -> None:
    """ValueError for a keyword the credential would otherwise ignore, naming it; nothing is silently dropped."""
    for name, value in kwargs.items():
        if name in PIPELINE_KEYWORDS or (name in _TAKEN_WHEN_FALSE and value is False):
            continue
        if name in _REFUSED_KEYWORDS:
            raise ValueError(f"{name}= is not supported: {_REFUSED_KEYWORDS[name]}")
        raise ValueError(
            f"unexpected keyword argument {name!r}: ManagedIdentityCredential does not take it "
            "(the README lists the keywords it takes)"
        )


def _client_request_id(kwargs: Mapping[str, Any]) -> str | bool:
    """What azure-core's RequestIdPolicy would send (its keywords stay for it): the engine sets the header itself,
    so an error can name it."""
    if "request_id" in kwargs:
        fixed = kwargs["request_id"]
        return fixed if isinstance(fixed, str) and fixed else False
    return kwargs.get("auto_request_id", True) is not False


def _machine_cache_options(
    value: Optional[bool], environ: Mapping[str, str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """machine_cache= (or MSI_CREDENTIAL_MACHINE_CACHE=1 when the keyword is not given): the directory to use.

    Private keywords: ``_machine_cache_dir`` (a directory instead of the default), ``_machine_cache_wait``.
    """
    from ._transport import machine_cache as files

    directory = kwargs.pop("_machine_cache_dir", None)
    wait = kwargs.pop("_machine_cache_wait", None)
    if value is None:
        setting = environ.get("MSI_CREDENTIAL_MACHINE_CACHE", "").strip().lower()
        if setting not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ValueError("MSI_CREDENTIAL_MACHINE_CACHE must be 1 or 0")
        enabled = setting in ("1", "true", "yes", "on")
    else:
        enabled = _flag(value, "machine_cache")
    if not enabled:
        return {}
    if not files.available():
        import logging

        logging.getLogger("msi_credential").info(
            "machine cache: not available on this platform (no flock); using the in-process cache only"
        )
        return {}
    options: dict[str, Any] = {"machine_cache_dir": directory or files.default_directory(dict(environ))}
    if wait is not None:
        options["machine_cache_wait"] = _number(wait, "_machine_cache_wait", minimum=0, strict=False)
    return options


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False")
    return value


def _number(value: object, name: str, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name} must be a number")
    if value < minimum or (strict and value == minimum):
        bound = "greater than" if strict else "at least"
        raise ValueError(f"{name} must be {bound} {minimum:g}")
    return float(value)


def _timeout(kwargs: dict[str, Any], name: str) -> Optional[float]:
    value = kwargs.pop(name, None)
    if value is None:
        return None
    return _number(value, name, minimum=0, strict=True)


def _retry_settings(kwargs: dict[str, Any]) -> RetrySettings:
    from ._engine.retry import RetrySettings

    total = kwargs.pop("retry_total", None)
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError("retry_total must be a non-negative integer")
    factor = kwargs.pop("retry_backoff_factor", None)
    maximum = kwargs.pop("retry_backoff_max", None)
    # timeout=: the whole get_token call, retries and every attempt included (azure-core's RetryPolicy name for
    # an operation's total time). _deadline is the older private spelling, kept for tests.
    deadline = kwargs.pop("timeout", None)
    private = kwargs.pop("_deadline", None)
    name = "timeout"
    if deadline is None and private is not None:
        deadline, name = private, "_deadline"
    return RetrySettings(
        deadline=DEFAULT_TIMEOUT if deadline is None else _number(deadline, name, minimum=0, strict=True),
        total=total,
        backoff_factor=1.0
        if factor is None
        else _number(factor, "retry_backoff_factor", minimum=0, strict=False),
        backoff_max=60.0
        if maximum is None
        else _number(maximum, "retry_backoff_max", minimum=0, strict=False),
    )


def _capabilities(values: Optional[Iterable[str]]) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        raise ValueError("client_capabilities must be a list of strings, e.g. ['cp1']")
    result = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or "," in value:
            raise ValueError("each client capability must be a non-empty string without commas")
        result.append(value.strip())
    return tuple(result)


# Private keywords that say nothing secret and still mean the same in another process; the others (_environ,
# which holds the secrets, injected clocks and sleepers) are not carried.
_CARRIED_PRIVATE = (
    "_platform",
    "_arc_key_directory",
    "_deadline",
    "_machine_cache_dir",
    "_machine_cache_wait",
)


def _picklable_arguments(
    *,
    client_id: Optional[str],
    identity_config: Optional[Mapping[str, Any]],
    object_id: Optional[str],
    resource_id: Optional[str],
    client_capabilities: Optional[Iterable[str]],
    share_cache: bool,
    kwargs: Mapping[str, Any],
) -> Optional[dict[str, Any]]:
    if kwargs.get("transport") is not None:
        return None
    arguments: dict[str, Any] = {
        "client_id": client_id,
        "identity_config": dict(identity_config) if identity_config is not None else None,
        "object_id": object_id,
        "resource_id": resource_id,
        "client_capabilities": list(client_capabilities) if client_capabilities is not None else None,
        "share_cache": share_cache,
    }
    for key, value in kwargs.items():
        if not key.startswith("_") or key in _CARRIED_PRIVATE:
            arguments[key] = value
    return arguments


def _rebuild_credential(cls: type[CredentialBase], arguments: dict[str, Any]) -> CredentialBase:
    return cls(**arguments)
