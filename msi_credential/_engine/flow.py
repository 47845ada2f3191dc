"""The token flow: a generator that yields effects and receives their results (no I/O of its own)."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Generator
from typing import Callable, Optional, Union
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, AccessTokenInfo

from .._errors import ManagedIdentityError, failed, unavailable, with_client_request_id
from .._source import ManagedIdentitySource
from . import cache
from .detection import SourceConfig, ca_problem
from .effects import (
    Effect,
    EffectResult,
    KeyFileResult,
    MachineEntry,
    MachineFound,
    MachineLookup,
    MachineStore,
    MachineThrottle,
    ReadAssertion,
    ReadProxyCA,
    Response,
    Send,
    Sleep,
    TransportFailure,
)
from .identity import Identity
from .record import Record, field, replace
from .response import Token, error_from_response, label, parse_token, scrub
from .retry import RetrySchedule, RetrySettings, retry_after
from .sources import SPECS, RequestParts

_LOGGER = logging.getLogger("msi_credential")

Flow = Generator[Effect, EffectResult, AccessTokenInfo]
_MIN_BUDGET = 0.05  # seconds: an attempt that starts at all gets at least this long
Clock = Callable[[], float]
CONNECT_TIMEOUT = 2.0  # seconds, unless connection_timeout= or the source's first contact says otherwise
READ_TIMEOUT = 10.0  # seconds, unless read_timeout= says otherwise
# Seconds a process waits for another one's token request for the same token before asking the endpoint itself.
MACHINE_CACHE_WAIT = 5.0

# Endpoints of sources that may not be there (SourceSpec.absence) that have answered in this process: before the
# first answer, their first contact fails fast (docs/protocols.md section 7).
_answered: set[str] = set()
# Endpoints that answered 429 with a Retry-After, and the moment (engine clock) before which no request goes to them
# again from this process (docs/protocols.md section 7). At most THROTTLE_LIMIT seconds are remembered.
_throttled: dict[str, float] = {}
THROTTLE_LIMIT = 300.0


def _no_spread() -> float:
    return 0.0


def forget_answers() -> None:
    """Tests: make the next contact with any endpoint a first contact again, and forget every 429's wait."""
    _answered.clear()
    _throttled.clear()


class EngineOptions(Record):
    connect_timeout: Optional[float] = None
    read_timeout: Optional[float] = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    capabilities: tuple[str, ...] = ()
    share_cache: bool = True
    # x-ms-client-request-id: True, a new one per attempt (azure-core's RequestIdPolicy default); a string, that
    # one (request_id=); False, none (auto_request_id=False or request_id=None).
    client_request_id: Union[str, bool] = True
    # the machine cache's directory when machine_cache is on (and the platform has flock), else None
    machine_cache_dir: Optional[str] = None
    machine_cache_wait: float = MACHINE_CACHE_WAIT
    # AZURE_TOKEN_CREDENTIALS names this credential (detection.names_managed_identity): the application chose
    # managed identity, so its first contact never fails fast, not even inside a credential chain
    chosen_by_environment: bool = False


class Engine:
    """Everything a credential does, for one detected source and one identity, as sans-I/O flows."""

    def __init__(
        self,
        config: SourceConfig,
        identity: Identity,
        options: EngineOptions,
        clock: Clock,
        monotonic: Optional[Clock] = None,
        random: Optional[Callable[[], float]] = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.options = options
        self.spec = SPECS[config.source]
        self.clock = clock  # the wall clock: token expiry and refresh windows
        # Deadlines and elapsed time: a clock step (NTP, a suspended VM) must not stretch or cut a call.
        self.monotonic: Clock = clock if monotonic is None else monotonic
        # A number in [0, 1) per token: how far this process moves its refresh point (cache.spread).
        self.random: Callable[[], float] = random if random is not None else _no_spread
        # Everything that changes which token comes back: the selector, the client id a source takes from the
        # environment (SourceSpec.client_id), extra identity_config parameters, capabilities.
        effective_client_id = self.spec.client_id(config, identity)
        key = (
            config.source.value,
            config.endpoint,
            identity.kind,
            identity.cache_value,
            (effective_client_id or "").lower(),
            identity.extra,
            options.capabilities,
        )
        self.bucket = cache.bucket_for(key, shared=options.share_cache)
        self.hit = cache.hit_reader(self.bucket, clock)
        self._proxy_ca: Optional[str] = (
            None  # the AKS token proxy CA last read (kept while the file is empty)
        )
        # The machine cache's key: the in-process key and the endpoint's secrets, hashed (names carry no secret).
        self.machine_key: Optional[str] = None
        # ... and the endpoint's throttle note there (a 429's Retry-After, for every process of this user)
        self.throttle_note: Optional[str] = None
        if options.machine_cache_dir is not None and self.spec.machine_cache:
            material = json.dumps([repr(key), list(config.secrets)])
            self.machine_key = hashlib.sha256(material.encode("utf-8")).hexdigest()
            endpoint = json.dumps(["throttle", config.source.value, config.endpoint])
            self.throttle_note = hashlib.sha256(endpoint.encode("utf-8")).hexdigest() + ".throttle"

    @property
    def source(self) -> ManagedIdentitySource:
        return self.config.source

    def still_valid(self, resource: str) -> Optional[AccessTokenInfo]:
        """The cached token while it may still be served (before the mandatory window), else None.

        A caller that finds a refresh already in flight takes this instead of waiting for it.
        """
        entry = self.bucket.get(resource)
        if entry is not None and self.clock() < entry.mandatory_at:
            return entry.info
        return None

    def throttled_until(self) -> float:
        """The moment before which the endpoint asked (429 Retry-After) not to be asked again; 0.0 if none."""
        return _throttled.get(self.config.endpoint, 0.0)

    def serve(self, resource: str) -> tuple[Optional[AccessTokenInfo], bool]:
        """A caller past the cache hit: what it does (the drivers perform it; no call here waits).

        ``(info, False)``: return the cached token at once (not due yet; a failed refresh backing off; the
        endpoint asked us to wait). ``(info, True)``: return it at once and start a refresh beside the caller
        (single-flight: the driver starts none if one is in flight for this token). ``(None, False)``: no token
        may be served (none cached, or the mandatory window): request and wait, as one single flight.
        """
        entry = self.bucket.get(resource)
        if entry is None:
            return None, False
        now = self.clock()
        if now >= entry.mandatory_at:
            return None, False
        if now < entry.refresh_on or now < entry.next_attempt_at or now < self.throttled_until():
            return entry.info, False
        return entry.info, True

    def acquire(self, resource: str, claims: Optional[str] = None, *, in_chain: bool = False) -> Flow:
        """Serve from the cache when the refresh windows allow, else request, store and return a token.

        ``in_chain``: the call comes from a credential chain (azure-identity's ChainedTokenCredential or
        DefaultAzureCredential), where a source that may not be there fails fast on its first contact.

        Run by a waiting caller (no token, or the mandatory window), a claims request, or a refresh beside the
        callers (``serve``); the windows are checked again here because another flow may have stored meanwhile.
        """
        now = self.clock()
        entry = self.bucket.get(resource)
        if claims is None and entry is not None:
            if now < entry.refresh_on:
                return entry.info
            if now < entry.mandatory_at and (now < entry.next_attempt_at or now < self.throttled_until()):
                return entry.info
        name = None
        if self.machine_key is not None:
            name = hashlib.sha256(f"{self.machine_key}\0{resource}".encode()).hexdigest()
        directory = self.options.machine_cache_dir or ""
        if name is not None and claims is None:
            # a bounded wait, and never more than half the call's deadline: the request needs the rest
            wait = min(self.options.machine_cache_wait, self.options.retry.deadline / 2)
            found = yield MachineLookup(directory, name, self.clock(), wait, self.throttle_note)
            assert isinstance(found, MachineFound)
            if found.throttled_until:
                self._throttle_until(found.throttled_until)
            shared = found.entry
            if shared is not None and self.clock() < min(shared.refresh_on, shared.expires_on):
                info = cache.SharedTokenInfo(
                    shared.token,
                    shared.expires_on,
                    token_type=shared.token_type,
                    refresh_on=shared.info_refresh_on,
                )
                stored = cache.CacheEntry(
                    info=info,
                    access_token=AccessToken(info.token, info.expires_on),
                    refresh_on=cache.spread(shared.refresh_on, shared.mandatory_at, self.random()),
                    mandatory_at=shared.mandatory_at,
                )
                cache.store(self.bucket, resource, stored, self.clock())
                _LOGGER.info("%s: token for %s from the machine cache", label(self.source), resource)
                return info
            if entry is not None and self.clock() < min(entry.mandatory_at, self.throttled_until()):
                return entry.info  # another process was asked to wait: ours may still be served
        start = self.clock()
        try:
            token = yield from self.request(resource, claims=claims, cached=entry, in_chain=in_chain)
        except ManagedIdentityError as error:
            if claims is None and entry is not None and self.clock() < entry.mandatory_at:
                entry.next_attempt_at = self.clock() + cache.ADVISORY_RETRY_DELAY
                _LOGGER.warning(
                    "%s: refreshing the token for %s failed (%s); serving the cached token, "
                    "which is still valid",
                    label(self.source),
                    resource,
                    error.error_code,
                )
                return entry.info
            raise
        info = cache.SharedTokenInfo(
            token.token,
            token.expires_on,
            token_type=token.token_type,
            refresh_on=token.refresh_on,
        )
        created = cache.CacheEntry.create(info, start)
        refresh_on = created.refresh_on  # the machine cache keeps it unspread: each process spreads its own
        created.refresh_on = cache.spread(refresh_on, created.mandatory_at, self.random())
        cache.store(self.bucket, resource, created, self.clock())
        if name is not None:
            yield MachineStore(
                directory,
                name,
                MachineEntry(
                    token=token.token,
                    expires_on=token.expires_on,
                    refresh_on=refresh_on,
                    mandatory_at=created.mandatory_at,
                    token_type=token.token_type,
                    info_refresh_on=token.refresh_on,
                ),
                self.clock(),
            )
        _LOGGER.info("%s: got a token for %s, expires at %d", label(self.source), resource, token.expires_on)
        return info

    def check_usable(self) -> None:
        """Refuse, before any socket, a configuration or identity this source cannot use."""
        if self.config.problem is not None:
            code, message = self.config.problem
            raise failed(message, error_code=code, source=self.source)
        if self.identity.user_assigned and self.identity.kind not in self.spec.selectors:
            taken = " or ".join(f"its {kind.replace('_', ' ')} ({kind}=)" for kind in self.spec.selectors)
            raise failed(
                f"{label(self.source)} does not support a user-assigned identity selected by "
                f"{self.identity.kind}" + (f"; select it by {taken} instead" if taken else ""),
                error_code="user_assigned_not_supported",
                source=self.source,
            )
        problem = self.spec.check(self.config, self.identity) if self.spec.check is not None else None
        if problem is not None:
            raise failed(problem[1], error_code=problem[0], source=self.source)

    def request(
        self,
        resource: str,
        *,
        claims: Optional[str] = None,
        cached: Optional[cache.CacheEntry] = None,
        in_chain: bool = False,
    ) -> Generator[Effect, EffectResult, Token]:
        """One token request with its retries: the protocol of the detected source.

        A source that may not be there (``SourceSpec.absence``) fails fast on its first contact only inside a
        credential chain, where the next credential should get its turn quickly; a credential used on its own, or
        one that AZURE_TOKEN_CREDENTIALS names, waits and retries like any other (docs/protocols.md section 7).
        """
        self.check_usable()
        source, spec, endpoint = self.source, self.spec, self.config.endpoint
        absence = spec.absence
        first_contact = (
            in_chain
            and not self.options.chosen_by_environment
            and absence is not None
            and absence.fails_fast(self.config)
            and endpoint not in _answered
        )
        connect_timeout = self.options.connect_timeout
        if connect_timeout is None:
            connect_timeout = CONNECT_TIMEOUT
            if first_contact and absence is not None:
                connect_timeout = absence.first_connect_timeout
        read_timeout = READ_TIMEOUT if self.options.read_timeout is None else self.options.read_timeout
        revocation = None
        if claims and cached is not None and spec.supports_revocation:
            revocation = hashlib.sha256(cached.info.token.encode("utf-8")).hexdigest()
        schedule = RetrySchedule(self.options.retry, spec.retry)
        began = self.monotonic()
        secrets = list(self.config.secrets)
        request_id: Optional[str] = None  # the x-ms-client-request-id of the attempt on the wire
        waited_until = 0.0  # the endpoint's named time (429 Retry-After) this request has already waited for
        try:
            while True:
                request_id = None
                assertion = None
                until = self.throttled_until()
                # a wait this request has already slept (the retry after its own 429) is not slept twice
                wait = until - self.clock() if until > waited_until else 0.0
                if wait > 0:
                    # the endpoint named a time (429 Retry-After): nothing goes out before it
                    if self.monotonic() - began + wait > self.options.retry.deadline:
                        raise failed(
                            f"{label(source)} asked (HTTP 429, Retry-After) not to be asked again for "
                            f"{wait:.0f} s more, which is past this call's deadline; no request was sent",
                            error_code="throttled",
                            source=source,
                        )
                    _LOGGER.info("%s: the endpoint asked to wait; waiting %.1f s", label(source), wait)
                    yield Sleep(wait)
                    waited_until = until
                if spec.reads_assertion:
                    read = yield ReadAssertion(self.config.token_file or "")
                    assert isinstance(read, KeyFileResult)
                    if read.error is not None:
                        raise failed(read.error[1], error_code=read.error[0], source=source)
                    assertion = read.content
                    secrets.append(assertion or "")
                proxy = self.config.token_proxy
                proxy_ca = proxy.ca_data if proxy is not None else None
                if proxy is not None and proxy.ca_file is not None:
                    read = yield ReadProxyCA(proxy.ca_file)
                    assert isinstance(read, KeyFileResult)
                    proxy_ca = self._current_proxy_ca(read)
                parts = RequestParts(
                    resource=resource,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    capabilities=self.options.capabilities,
                    token_sha256_to_refresh=revocation,
                    claims=claims,
                    client_assertion=assertion,
                )
                request = spec.build(self.config, self.identity, parts)
                # The attempt gets what is left of the call's deadline (``timeout=``), and no single step more.
                budget = max(self.options.retry.deadline - (self.monotonic() - began), _MIN_BUDGET)
                request_id = self._new_request_id()
                headers = dict(request.headers)
                if request_id is not None:
                    headers["x-ms-client-request-id"] = request_id
                request = replace(
                    request,
                    headers=headers,
                    budget=budget,
                    connect_timeout=min(request.connect_timeout, budget),
                    read_timeout=min(request.read_timeout, budget),
                )
                if proxy is not None:
                    # the assertion goes to the proxy only: no environment or caller proxy in between
                    request = replace(
                        request,
                        use_proxies=False,
                        token_proxy=True,
                        tls_ca=proxy_ca,
                        tls_server_name=proxy.server_name,
                    )
                start = self.clock()
                outcome = yield Send(request)
                if spec.challenge is not None and isinstance(outcome, Response) and outcome.status == 401:
                    outcome = yield from spec.challenge(self.config, request, outcome, secrets)
                if isinstance(outcome, TransportFailure):
                    self._check_transport_failure(outcome, first_contact, secrets)
                    delay = schedule.next_delay(
                        status=None, headers={}, now=self.clock(), elapsed=self.monotonic() - began
                    )
                    if delay is None:
                        raise self._unreachable(outcome, schedule.retries, secrets)
                    _LOGGER.info(
                        "%s: %s; retrying in %.1f s", label(source), scrub(outcome.detail, secrets), delay
                    )
                    yield Sleep(delay)
                    continue
                assert isinstance(outcome, Response)
                if absence is not None:
                    _answered.add(endpoint)
                    if first_contact and self.options.connect_timeout is None:
                        # it is here: its retries get the normal connect timeout
                        connect_timeout = CONNECT_TIMEOUT
                    first_contact = False
                if 200 <= outcome.status < 300:
                    token = parse_token(outcome, source=source, start=start)
                    if spec.confirm is not None:
                        spec.confirm(self.identity, token.body)
                    return token
                named: Optional[float] = None
                if outcome.status == 429:
                    named = self._remember_throttle(outcome)
                    if named is not None and self.throttle_note is not None:
                        yield MachineThrottle(self.options.machine_cache_dir or "", self.throttle_note, named)
                if schedule.retried(outcome.status):
                    delay = schedule.next_delay(
                        status=outcome.status,
                        headers=outcome.headers,
                        now=self.clock(),
                        elapsed=self.monotonic() - began,
                    )
                    if delay is not None:
                        _LOGGER.info("%s: HTTP %d; retrying in %.1f s", label(source), outcome.status, delay)
                        yield Sleep(delay)
                        if named is not None:
                            waited_until = max(waited_until, named)  # the delay was at least the named wait
                        continue
                raise error_from_response(outcome, source=source, secrets=secrets)
        except ManagedIdentityError as error:
            if request_id is not None:
                with_client_request_id(error, request_id)
            raise

    def _remember_throttle(self, outcome: Response) -> Optional[float]:
        """A 429's Retry-After, kept for the endpoint: other callers are served from the cache or wait until then.
        The time it holds the endpoint, or None when it names none."""
        now = self.clock()
        delay = retry_after(outcome.headers, now)
        if delay is None or delay <= 0:
            return None
        until = now + min(delay, THROTTLE_LIMIT)
        self._throttle_until(until)
        return until

    def _throttle_until(self, until: float) -> None:
        """Hold the endpoint until then (a later time already held stays), at most THROTTLE_LIMIT from now."""
        until = min(until, self.clock() + THROTTLE_LIMIT)
        endpoint = self.config.endpoint
        if until > _throttled.get(endpoint, 0.0):
            _throttled[endpoint] = until

    def _new_request_id(self) -> Optional[str]:
        wanted = self.options.client_request_id
        if wanted is False:
            return None
        if isinstance(wanted, str):
            return wanted
        return str(uuid.uuid4())

    def _current_proxy_ca(self, read: KeyFileResult) -> str:
        """The CA to check the token proxy with: the file's, or the previous one while the file is empty
        (mid-rotation) or unusable; with none usable yet, failed ``invalid_token_proxy_ca`` before any request."""
        content = read.content if read.error is None else None
        if content:
            if content == self._proxy_ca:
                return content
            why = ca_problem(content)
            if why is None:
                if self._proxy_ca is not None:
                    _LOGGER.info("%s: AZURE_KUBERNETES_CA_FILE changed; using the new CA", label(self.source))
                self._proxy_ca = content
                return content
            problem = f"AZURE_KUBERNETES_CA_FILE is not usable: {why}"
        elif read.error is None:
            problem = "AZURE_KUBERNETES_CA_FILE is empty"
        else:
            problem = read.error[1]
        if self._proxy_ca is not None:
            _LOGGER.info("%s: %s; keeping the previous CA", label(self.source), problem)
            return self._proxy_ca
        raise failed(problem, error_code="invalid_token_proxy_ca", source=self.source)

    def _shown_endpoint(self, secrets: list[str]) -> str:
        """The endpoint for a message: no user info, query or fragment, and no secret (a variable may carry one)."""
        try:
            parts = urlsplit(self.config.endpoint)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            shown = f"{parts.scheme}://{host}{port}{parts.path}"
        except ValueError:
            shown = "the configured endpoint"
        return scrub(shown, secrets)

    def _check_transport_failure(
        self, outcome: TransportFailure, first_contact: bool, secrets: list[str]
    ) -> None:
        source = self.source
        if outcome.kind == "pin_mismatch":
            raise failed(
                f"{label(source)}: the server certificate does not match IDENTITY_SERVER_THUMBPRINT; "
                "nothing was sent",
                error_code="thumbprint_mismatch",
                source=source,
            )
        absence = self.spec.absence
        if first_contact and absence is not None:
            raise unavailable(
                f"{label(source)} did not answer at {self._shown_endpoint(secrets)} "
                f"({scrub(outcome.detail, secrets)}); managed identity is not available here",
                error_code=absence.code,
                source=source,
            )

    def _unreachable(
        self, outcome: TransportFailure, retries: int, secrets: list[str]
    ) -> ManagedIdentityError:
        source = self.source
        where = f"{self.config.endpoint_variable or 'the endpoint'} ({self._shown_endpoint(secrets)})"
        name = "AKS token proxy" if self.config.token_proxy is not None else label(source)
        message = (
            f"{name} at {where} did not answer after {retries + 1} attempt(s): "
            f"{scrub(outcome.detail, secrets)}"
        )
        if self.spec.absence is not None:
            return unavailable(message, error_code=self.spec.absence.code, source=source)
        return failed(message, error_code="endpoint_unreachable", source=source)
