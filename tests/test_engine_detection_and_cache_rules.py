"""Detection's AKS token-proxy rules, the detection reasons and the cache's hit, store and sweep rules, checked
through the engine's functions (issue 13, mutation testing).

tests/test_token_proxy.py checks the token proxy end to end over real TLS; these tests check the same rules at
``detect()`` itself, socket-free, so that the mutation run of docs/mutation.md (which runs only socket-free tests)
covers them. CA PEMs come from trustme; nothing is sent anywhere.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import trustme
from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentitySource
from msi_credential._engine import cache
from msi_credential._engine.detection import (
    TOKEN_PROXY_VARIABLES,
    SourceConfig,
    TokenProxy,
    _endpoint_variables,
    _token_proxy_base,
    ca_problem,
    detect,
    detection_reason,
)
from msi_credential._engine.response import secret_forms

WORKLOAD = ManagedIdentitySource.WORKLOAD_IDENTITY
TENANT = "tenant-1"
AUTHORITY_PATH = f"/{TENANT}/oauth2/v2.0/token"
PROXY = "https://127.0.0.1:8443/proxy"


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode("ascii")


def _workload(**changes: Optional[str]) -> dict[str, str]:
    environ = {
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": "client-1",
        "AZURE_AUTHORITY_HOST": "https://login.example.test",
    }
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def _detect(environ: dict[str, str], *, opted_in: bool = True, himds: bool = False) -> SourceConfig:
    return detect(environ, platform="linux", path_exists=lambda _: himds, enable_azure_proxy=opted_in)


def _proxied(**changes: Optional[str]) -> SourceConfig:
    return _detect(_workload(**{"AZURE_KUBERNETES_TOKEN_PROXY": PROXY, **changes}))


# ------------------------------------------------------------------------------ token proxy: accepted settings


def test_the_proxy_replaces_the_authority_keeping_the_token_request_path() -> None:
    config = _proxied()
    assert config.problem is None
    assert config.source is WORKLOAD
    assert config.endpoint == PROXY + AUTHORITY_PATH
    assert config.endpoint_variable == "AZURE_KUBERNETES_TOKEN_PROXY"
    assert config.token_proxy == TokenProxy(PROXY, ca_file=None, ca_data=None, server_name=None)
    # everything else workload identity needs is kept
    assert (config.tenant_id, config.client_id, config.token_file) == (
        TENANT,
        "client-1",
        "/var/run/secrets/token",
    )


@pytest.mark.parametrize(
    ("proxy", "endpoint"),
    [
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/", "https://127.0.0.1:8443" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/proxy/", "https://127.0.0.1:8443/proxy" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/a/b//", "https://127.0.0.1:8443/a/b" + AUTHORITY_PATH),
        ("HTTPS://Proxy.Example.test", "https://Proxy.Example.test" + AUTHORITY_PATH),
        ("  https://proxy.example.test/p  ", "https://proxy.example.test/p" + AUTHORITY_PATH),
    ],
)
def test_the_proxy_path_and_the_token_path_are_joined_by_exactly_one_slash(proxy: str, endpoint: str) -> None:
    config = _detect(_workload(AZURE_KUBERNETES_TOKEN_PROXY=proxy))
    assert config.problem is None
    assert config.endpoint == endpoint
    assert config.token_proxy is not None and config.token_proxy.url == proxy.strip()


def test_the_ca_file_and_server_name_are_kept_as_given_for_every_request(tmp_path: Path) -> None:
    ca_file = str(tmp_path / "ca.pem")  # read per request by the transport, not at detection
    config = _proxied(
        AZURE_KUBERNETES_CA_FILE=f" {ca_file} ", AZURE_KUBERNETES_SNI_NAME="proxy.cluster.local"
    )
    assert config.problem is None
    assert config.token_proxy == TokenProxy(PROXY, ca_file=ca_file, server_name="proxy.cluster.local")


def test_usable_ca_data_is_kept_on_the_token_proxy(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert config.problem is None
    assert config.token_proxy is not None
    assert config.token_proxy.ca_data == ca_pem.strip()
    assert config.token_proxy.ca_file is None


def test_the_ca_data_is_not_in_the_repr_of_the_token_proxy(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert "BEGIN CERTIFICATE" not in repr(config)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "proxy",
        "proxy.cluster.local",
        "proxy.cluster.local.",
        "a-b.c-d",
        "0a.9z",
        "x" * 63,
        ".".join(["x" * 63] * 3) + "." + "x" * 61,  # 253 characters
    ],
)
def test_a_dns_name_is_accepted_as_the_server_name(name: str) -> None:
    config = _proxied(AZURE_KUBERNETES_SNI_NAME=name)
    assert config.problem is None
    # a fully qualified name's one trailing dot is dropped: the same name on both faces' TLS stacks
    expected = name[:-1] if name.endswith(".") else name
    assert config.token_proxy is not None and config.token_proxy.server_name == expected


# ------------------------------------------------------------------------------ token proxy: when it applies


def test_without_the_opt_in_the_proxy_variables_are_ignored_even_when_invalid() -> None:
    environ = _workload(AZURE_KUBERNETES_TOKEN_PROXY="http://bad", AZURE_KUBERNETES_CA_DATA="x")
    config = _detect(environ, opted_in=False)
    assert config.problem is None
    assert config.token_proxy is None
    assert config.endpoint == "https://login.example.test" + AUTHORITY_PATH
    assert config.endpoint_variable == "AZURE_AUTHORITY_HOST"


def test_opted_in_without_any_proxy_variable_detects_as_without_the_opt_in() -> None:
    assert _detect(_workload()) == _detect(_workload(), opted_in=False)


def test_blank_proxy_variables_count_as_unset() -> None:
    blank = {name: "  " for name in TOKEN_PROXY_VARIABLES}
    assert _detect(_workload(**blank)) == _detect(_workload(), opted_in=False)


@pytest.mark.parametrize(
    "environ",
    [
        {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/token", "IDENTITY_HEADER": "h"},
        {"MSI_ENDPOINT": "http://127.0.0.1:1/token"},
        {},
    ],
)
def test_the_proxy_is_only_for_workload_identity(environ: dict[str, str]) -> None:
    environ = {
        **environ,
        "AZURE_KUBERNETES_TOKEN_PROXY": "http://bad",
        "AZURE_KUBERNETES_SNI_NAME": "bad name",
    }
    config = _detect(environ)
    assert config.source is not WORKLOAD
    assert config.problem is None and config.token_proxy is None


def test_a_workload_identity_problem_is_reported_before_the_proxy_is_looked_at() -> None:
    config = _detect(_workload(AZURE_TENANT_ID="bad/tenant", AZURE_KUBERNETES_TOKEN_PROXY="http://bad"))
    assert config.problem is not None and config.problem[0] == "invalid_tenant_id"
    assert config.token_proxy is None


# ------------------------------------------------------------------------------ token proxy: refusals


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"AZURE_KUBERNETES_CA_FILE": "/ca.pem"},
            "AZURE_KUBERNETES_CA_FILE is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_CA_DATA": "x"},
            "AZURE_KUBERNETES_CA_DATA is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_SNI_NAME": "proxy"},
            "AZURE_KUBERNETES_SNI_NAME is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_CA_FILE": "/ca.pem", "AZURE_KUBERNETES_SNI_NAME": "proxy"},
            "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_SNI_NAME are set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {
                "AZURE_KUBERNETES_SNI_NAME": "proxy",
                "AZURE_KUBERNETES_CA_DATA": "x",
                "AZURE_KUBERNETES_CA_FILE": "/ca.pem",
            },
            "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_CA_DATA and AZURE_KUBERNETES_SNI_NAME are set without "
            "AZURE_KUBERNETES_TOKEN_PROXY",
        ),
    ],
)
def test_proxy_settings_without_the_proxy_are_refused_naming_them(
    given: dict[str, str], message: str
) -> None:
    config = _detect(_workload(**given))
    assert config.problem == ("invalid_token_proxy", message)
    assert config.token_proxy is None


BAD_PROXY_URLS = [
    "http://127.0.0.1:1/proxy",
    "ftp://127.0.0.1:1/",
    "127.0.0.1:1",
    "//127.0.0.1:1/proxy",
    "https:///no-host",
    "https://:8443/",
    "https://user:pass@127.0.0.1:1/proxy",
    "https://user@127.0.0.1:1",
    "https://@127.0.0.1:1",
    "https://127.0.0.1:1/proxy?x=1",
    "https://127.0.0.1:1/proxy?",
    "https://127.0.0.1:1/proxy#fragment",
    "https://127.0.0.1:1/proxy#",
    "https://127.0.0.1:1\\proxy",
    "https://127.0.0.1:99999/",
    "https://127.0.0.1:port/",
    "https://[::1/",
    "https://127.0.0.1:1/pro xy",
    "https://127.0.0.1:1/pro\txy",
    "https://127.0.0.1:1/pr\u00f6xy",
]


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_a_proxy_url_that_is_not_plain_https_is_refused_with_the_rule(url: str) -> None:
    config = _proxied(AZURE_KUBERNETES_TOKEN_PROXY=url)
    assert config.problem == (
        "invalid_token_proxy",
        "AZURE_KUBERNETES_TOKEN_PROXY must be an https:// URL with a host and no user info, query or fragment",
    )
    assert config.token_proxy is None
    assert config.endpoint == "https://login.example.test" + AUTHORITY_PATH


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_the_proxy_base_of_a_bad_url_is_none(url: str) -> None:
    assert _token_proxy_base(url) is None


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://h", "https://h"),
        ("https://h/", "https://h"),
        ("https://h:1/a/", "https://h:1/a"),
        ("https://[::1]:8443/p", "https://[::1]:8443/p"),
        ("hTTps://h/p", "https://h/p"),
    ],
)
def test_the_proxy_base_is_scheme_netloc_and_path_without_a_trailing_slash(url: str, base: str) -> None:
    assert _token_proxy_base(url) == base


def test_both_ca_variables_are_refused_saying_to_set_at_most_one(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_FILE="/ca.pem", AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert config.problem == (
        "invalid_token_proxy_ca",
        "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_CA_DATA are both set; set at most one",
    )
    assert config.token_proxy is None


def test_the_url_is_checked_before_the_ca_variables(ca_pem: str) -> None:
    config = _proxied(
        AZURE_KUBERNETES_TOKEN_PROXY="http://bad",
        AZURE_KUBERNETES_CA_FILE="/ca.pem",
        AZURE_KUBERNETES_CA_DATA="x",
    )
    assert config.problem is not None and config.problem[0] == "invalid_token_proxy"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("-", "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
        ("not a certificate", "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "its PEM certificates do not parse",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nQUJDRA==\n-----END CERTIFICATE-----",
            "its PEM certificates do not parse",
        ),
    ],
)
def test_unusable_ca_data_is_refused_saying_why(data: str, why: str) -> None:
    assert ca_problem(data) == why
    config = _proxied(AZURE_KUBERNETES_CA_DATA=data)
    assert config.problem == ("invalid_token_proxy_ca", f"AZURE_KUBERNETES_CA_DATA is not usable: {why}")
    assert config.token_proxy is None


@pytest.mark.parametrize(
    "hostile",
    [
        "-----BEGIN CERTIFICATE-----" + " " * 20_000,  # took 8 s under the old regular expression
        "-----BEGIN CERTIFICATE-----\n" * 4_000 + "-----END CERTIFICATE-----",
        ("-----BEGIN CERTIFICATE-----\nAA!A " + "-----END CERTIFICATE-----") * 2_000,
    ],
)
def test_ca_data_check_is_linear_in_its_size(hostile: str) -> None:
    class CountedReads(str):
        reads = 0

        def __getitem__(self, key: Any) -> str:
            CountedReads.reads += 1
            return str.__getitem__(self, key)

        def find(self, *args: Any) -> int:
            CountedReads.reads += 1
            return str.find(self, *args)

        def rfind(self, *args: Any) -> int:
            CountedReads.reads += 1
            return str.rfind(self, *args)

    assert ca_problem(CountedReads(hostile)) == "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
    # a few searches and slices per END marker, each over text no other one covers: no regular expression
    assert 0 < CountedReads.reads <= 4 * hostile.count("-----END") + 2


def test_a_pem_bundle_of_real_certificates_has_no_ca_problem(ca_pem: str) -> None:
    assert ca_problem(ca_pem) is None
    assert ca_problem(ca_pem + trustme.CA().cert_pem.bytes().decode("ascii")) is None
    assert ca_problem("comment before\n" + ca_pem) is None


@pytest.mark.parametrize(
    "name",
    [
        "bad name",
        "a/b",
        "-proxy",
        "proxy-",
        "a..b",
        ".proxy",
        "pr_oxy",
        "x" * 64,
        ".".join(["x" * 63] * 3) + "." + "x" * 62,  # 254 characters
        "pröxy",
    ],
)
def test_a_server_name_that_is_not_a_dns_name_is_refused(name: str) -> None:
    config = _proxied(AZURE_KUBERNETES_SNI_NAME=name)
    assert config.problem == (
        "invalid_token_proxy_sni",
        "AZURE_KUBERNETES_SNI_NAME is not a DNS name (letters, digits, '-' and '.')",
    )
    assert config.token_proxy is None


def test_the_ca_is_checked_before_the_server_name() -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA="x", AZURE_KUBERNETES_SNI_NAME="bad name")
    assert config.problem is not None and config.problem[0] == "invalid_token_proxy_ca"


# ------------------------------------------------------------------------------ the variables that name URLs


def test_arc_through_identity_endpoint_checks_imds_endpoint_too() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/token", "IMDS_ENDPOINT": "http://127.0.0.1:1/x y"}
    config = _detect(environ, opted_in=False)
    assert config.source is ManagedIdentitySource.AZURE_ARC
    assert config.problem is not None
    assert config.problem[0] == "invalid_endpoint" and config.problem[1].startswith("IMDS_ENDPOINT ")
    assert _endpoint_variables(
        _detect({**environ, "IMDS_ENDPOINT": "http://127.0.0.1:1"}, opted_in=False)
    ) == (
        "IDENTITY_ENDPOINT",
        "IMDS_ENDPOINT",
    )


def test_arc_found_by_its_agent_checks_no_variable() -> None:
    config = _detect({"IMDS_ENDPOINT": "http://x#y"}, opted_in=False, himds=True)
    assert config.source is ManagedIdentitySource.AZURE_ARC and config.problem is None
    assert _endpoint_variables(config) == ()


def test_the_endpoint_variables_are_the_detected_sources_own() -> None:
    assert _endpoint_variables(_proxied()) == ("AZURE_KUBERNETES_TOKEN_PROXY",)
    assert _endpoint_variables(_detect(_workload(), opted_in=False)) == ("AZURE_AUTHORITY_HOST",)
    app_service = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"}
    assert _endpoint_variables(_detect(app_service, opted_in=False)) == ("IDENTITY_ENDPOINT",)
    assert _endpoint_variables(_detect({}, opted_in=False)) == ()


def test_the_identity_endpoint_is_named_when_it_has_a_fragment() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t#x", "IDENTITY_HEADER": "h"}
    assert _detect(environ, opted_in=False).problem == (
        "invalid_endpoint",
        "IDENTITY_ENDPOINT contains whitespace, control or non-ASCII characters, or a '#' fragment",
    )


# ------------------------------------------------------------------------------ detection_reason


@pytest.mark.parametrize(
    ("environ", "himds", "reason"),
    [
        (
            {
                "IDENTITY_ENDPOINT": "https://127.0.0.1:2377/t",
                "IDENTITY_HEADER": "h",
                "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
            },
            False,
            "IDENTITY_ENDPOINT, IDENTITY_HEADER and IDENTITY_SERVER_THUMBPRINT are set",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"},
            False,
            "IDENTITY_ENDPOINT and IDENTITY_HEADER are set",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IMDS_ENDPOINT": "http://127.0.0.1:2"},
            False,
            "IDENTITY_ENDPOINT and IMDS_ENDPOINT are set",
        ),
        ({}, True, "the Azure Connected Machine agent (himds) is installed"),
        (
            {"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "s"},
            False,
            "MSI_ENDPOINT and MSI_SECRET are set",
        ),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t"}, False, "MSI_ENDPOINT is set without MSI_SECRET"),
        (_workload(), False, "AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID are set"),
        (
            {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1"},
            False,
            "no other source's variables; AZURE_POD_IDENTITY_AUTHORITY_HOST replaces the IMDS address",
        ),
        ({}, False, "no other source's variables are set (the default: Azure VMs, AKS, Container Instances)"),
    ],
)
def test_the_detection_reason_names_the_rule_that_matched(
    environ: dict[str, str], himds: bool, reason: str
) -> None:
    assert detection_reason(_detect(environ, opted_in=False, himds=himds)) == reason


def test_the_detection_reason_of_a_proxied_workload_identity_is_workload_identitys() -> None:
    assert detection_reason(_proxied()) == "AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID are set"


# ------------------------------------------------------------------------------ cache: the hit


def _entry(expires_on: int, refresh_on: Optional[int] = None) -> cache.CacheEntry:
    return cache.CacheEntry.create(AccessTokenInfo("t", expires_on, refresh_on=refresh_on), start=0.0)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_a_hit_is_the_entry_for_the_one_scope_until_its_refresh_time() -> None:
    bucket = cache.Bucket()
    entry = _entry(5000, refresh_on=3000)
    bucket["https://r/.default"] = entry
    clock = _Clock(2999.5)
    hit = cache.hit_reader(bucket, clock)

    assert hit(("https://r/.default",)) is entry
    clock.now = 3000.0  # due for refresh: the slow path decides
    assert hit(("https://r/.default",)) is None
    assert clock.reads == 2


def test_a_hit_reads_the_bucket_as_it_is_now() -> None:
    bucket = cache.Bucket()
    hit = cache.hit_reader(bucket, _Clock(0.0))
    assert hit(("https://r/.default",)) is None
    entry = _entry(5000)
    cache.store(bucket, "https://r", entry, now=0.0)
    assert hit(("https://r/.default",)) is entry
    assert hit(("https://r",)) is entry


@pytest.mark.parametrize(
    "scopes", [(), ("https://r/.default", "https://r/.default"), (["https://r"],), ({},)]
)
def test_no_hit_for_other_than_one_hashable_scope(scopes: tuple[Any, ...]) -> None:
    bucket = cache.Bucket()
    bucket["https://r/.default"] = _entry(5000)
    clock = _Clock(0.0)
    assert cache.hit_reader(bucket, clock)(scopes) is None
    assert clock.reads == 0


def test_a_missing_scope_is_no_hit_without_reading_the_clock() -> None:
    clock = _Clock(0.0)
    assert cache.hit_reader(cache.Bucket(), clock)(("https://other/.default",)) is None
    assert clock.reads == 0


# ------------------------------------------------------------------------------ cache: buckets and storing


def test_a_new_bucket_is_empty_private_and_sweeps_at_64_entries() -> None:
    bucket = cache.Bucket()
    assert dict(bucket) == {}
    assert bucket.shared is False
    assert bucket.sweep_at == 64
    assert bucket.flights == {} and bucket.async_flights == {}
    assert bucket.flights is not bucket.async_flights
    assert isinstance(bucket.lock, type(threading.RLock()))  # re-entrant: a signal handler may take it again
    assert bucket.lock.acquire(blocking=False)
    bucket.lock.release()
    assert cache._all_buckets[id(bucket)] is bucket
    assert cache.Bucket(shared=True).shared is True


def test_after_a_fork_a_bucket_has_no_flights_and_a_fresh_lock() -> None:
    bucket = cache.Bucket()
    bucket.flights["r"] = object()
    bucket.async_flights["r"] = object()
    bucket.lock.acquire()
    cache._after_fork_in_child()
    assert bucket.flights == {} and bucket.async_flights == {}
    assert bucket.lock.acquire(blocking=False)
    bucket.lock.release()


def test_storing_indexes_the_entry_by_the_resource_and_its_default_scope() -> None:
    bucket = cache.Bucket()
    entry = _entry(5000)
    cache.store(bucket, "https://r", entry, now=0.0)
    assert dict(bucket) == {"https://r": entry, "https://r/.default": entry}


def test_a_shared_bucket_is_held_while_it_has_tokens_and_a_private_one_is_not() -> None:
    shared = cache.bucket_for(("s", "e", "i"), shared=True)
    private = cache.bucket_for(("s", "e", "i"), shared=False)
    cache.store(shared, "https://r", _entry(5000), now=0.0)
    cache.store(private, "https://r", _entry(5000), now=0.0)
    assert cache._holding == {id(shared): shared}


def test_storing_below_the_sweep_size_keeps_expired_entries() -> None:
    bucket = cache.Bucket()
    for i in range(31):  # 62 keys
        cache.store(bucket, f"https://expired{i}", _entry(1000), now=2000.0)
    assert len(bucket) == 62


# ------------------------------------------------------------------------------ cache: the shared sweep


@pytest.fixture
def held() -> Iterator[cache.Bucket]:
    """A shared bucket holding one token that expires at 1000, stored at 0 (the first shared sweep ran then)."""
    bucket = cache.bucket_for(("held",), shared=True)
    cache.store(bucket, "https://expiring", _entry(1000), now=0.0)
    assert cache._next_shared_sweep[0] == cache.SHARED_SWEEP_INTERVAL
    yield bucket


def test_the_shared_sweep_drops_expired_tokens_of_held_buckets_and_lets_empty_ones_go(
    held: cache.Bucket,
) -> None:
    cache._sweep_shared(1000.0)
    assert dict(held) == {}
    assert cache._holding == {}
    assert cache._next_shared_sweep[0] == 1000.0 + 60.0


def test_the_shared_sweep_keeps_held_buckets_that_still_have_tokens(held: cache.Bucket) -> None:
    live = _entry(5000)
    held["https://live"] = live
    cache._sweep_shared(1000.0)
    assert dict(held) == {"https://live": live}
    assert cache._holding == {id(held): held}


def test_the_shared_sweep_runs_at_most_once_a_minute(held: cache.Bucket) -> None:
    live = _entry(5000)
    held["https://live"] = live  # keeps the bucket held
    cache._sweep_shared(1000.0)
    assert dict(held) == {"https://live": live}
    held["https://expiring"] = _entry(1000)
    cache._sweep_shared(1059.9)  # within the minute: not swept
    assert "https://expiring" in held
    other = cache.bucket_for(("other",), shared=True)
    cache.store(other, "https://x", _entry(5000), now=1059.9)  # nor by storing elsewhere
    assert "https://expiring" in held
    cache._sweep_shared(1060.0)  # a minute later: swept
    assert dict(held) == {"https://live": live}
    assert cache._next_shared_sweep[0] == 1120.0


def test_storing_sweeps_every_shared_bucket_once_the_minute_has_passed(held: cache.Bucket) -> None:
    other = cache.bucket_for(("other",), shared=True)
    cache.store(other, "https://x", _entry(5000), now=1000.0)
    assert dict(held) == {}
    assert set(cache._holding) == {id(other)}


class _ReplacedWhileSwept(cache.Bucket):
    """A bucket whose place in the holding table is taken by another one while it is swept."""

    replacement: cache.Bucket

    def sweep(self, now: float) -> None:
        super().sweep(now)
        cache._holding[id(self)] = self.replacement


def test_the_shared_sweep_lets_go_only_of_the_bucket_it_emptied() -> None:
    bucket = _ReplacedWhileSwept(shared=True)
    bucket.replacement = cache.Bucket(shared=True)
    bucket["https://expiring"] = _entry(1000)
    cache._holding[id(bucket)] = bucket
    cache._sweep_shared(2000.0)
    assert dict(bucket) == {}
    assert cache._holding == {id(bucket): bucket.replacement}


# ------------------------------------------------------------------------------ cache: the bucket's own sweep


def _filled(total: int, expired: int) -> cache.Bucket:
    bucket = cache.Bucket()
    for i in range(total):
        bucket[f"k{i}"] = _entry(1000 if i < expired else 5000)
    return bucket


@pytest.mark.parametrize(
    ("total", "expired", "rebuilt"),
    [
        (64, 48, True),  # 64 entries, a quarter left: the table is rebuilt
        (80, 60, True),
        (64, 47, False),  # more than a quarter left
        (63, 48, False),  # below the sweep size
    ],
)
def test_a_sweep_rebuilds_the_table_when_at_least_64_entries_shrink_to_a_quarter(
    total: int, expired: int, rebuilt: bool
) -> None:
    bucket = _filled(total, expired)
    size = sys.getsizeof(bucket)
    bucket.sweep(2000.0)
    assert sorted(bucket) == sorted(f"k{i}" for i in range(expired, total))
    assert (sys.getsizeof(bucket) < size) is rebuilt


@pytest.mark.parametrize(("total", "expired", "sweep_at"), [(64, 48, 64), (100, 0, 200), (100, 67, 66)])
def test_after_a_sweep_the_next_is_when_the_bucket_has_doubled(
    total: int, expired: int, sweep_at: int
) -> None:
    bucket = _filled(total, expired)
    bucket.sweep(1000.0)
    assert bucket.sweep_at == sweep_at


def test_a_sweep_drops_a_token_from_its_expiry_on_not_before() -> None:
    bucket = cache.Bucket()
    bucket["k"] = _entry(1000)
    bucket.sweep(999.0)
    assert "k" in bucket  # not yet expired
    bucket.sweep(1000.0)
    assert "k" not in bucket


# ------------------------------------------------------------------------------ detection: string edges


@pytest.mark.parametrize(
    ("pod_host", "endpoint"),
    [
        ("http://[X/", "http://[X"),  # urlsplit refuses it: the value less its trailing slashes
        ("proxyX/", "proxyX"),  # no scheme: likewise
        ("http://127.0.0.1:1/some/path", "http://127.0.0.1:1"),
    ],
)
def test_the_pod_identity_host_replaces_only_the_imds_origin(pod_host: str, endpoint: str) -> None:
    config = _detect({"AZURE_POD_IDENTITY_AUTHORITY_HOST": pod_host}, opted_in=False)
    assert config.endpoint == endpoint + "/metadata/identity/oauth2/token"


def test_himds_on_windows_is_looked_for_under_program_files_as_given() -> None:
    looked: list[str] = []
    detect(
        {"ProgramFiles": "D:\\ProgramsX"}, platform="win32", path_exists=lambda p: looked.append(p) or False
    )
    assert looked == ["D:\\ProgramsX\\AzureConnectedMachineAgent\\himds.exe"]


def test_the_arc_key_directory_on_windows_keeps_the_program_data_path_as_given() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t", "IMDS_ENDPOINT": "http://127.0.0.1:40342"}
    config = detect({**environ, "ProgramData": "D:\\DataX"}, platform="win32", path_exists=lambda _: False)
    assert config.arc_key_directory == "D:\\DataX\\AzureConnectedMachineAgent\\Tokens"


def test_an_authority_host_with_any_letter_is_accepted() -> None:
    config = _detect(_workload(AZURE_AUTHORITY_HOST="https://login.eXample.test"), opted_in=False)
    assert config.problem is None
    assert config.endpoint == "https://login.eXample.test" + AUTHORITY_PATH


# ------------------------------------------------------------------------------ response: the forms of a secret


@pytest.mark.parametrize(
    ("secret", "forms"),
    [
        # base64 without padding that ends in 'X': only '=' is stripped, never a base64 character
        ("secreW", {"secreW", "736563726557", "c2VjcmVX"}),
        (
            "a b/c~d",
            {
                "a b/c~d",
                "a%20b%2Fc~d",
                "a+b%2Fc~d",
                "6120622f637e64",
                "YSBiL2N+ZA==",
                "YSBiL2N+ZA",
                "YSBiL2N-ZA==",
                "YSBiL2N-ZA",
            },
        ),
    ],
)
def test_a_secret_is_scrubbed_in_exactly_its_echo_forms(secret: str, forms: set[str]) -> None:
    assert secret_forms(secret) == forms


def test_detect_ignores_the_proxy_variables_unless_asked() -> None:
    config = detect(
        _workload(AZURE_KUBERNETES_TOKEN_PROXY=PROXY), platform="linux", path_exists=lambda _: False
    )
    assert config.token_proxy is None


@pytest.mark.parametrize(
    ("proxy", "tenant", "endpoint"),
    [
        ("https://h/a\\b", TENANT, None),  # a backslash anywhere is refused
        ("https://h/pX", TENANT, "https://h/pX" + AUTHORITY_PATH),
        ("https://h/p", "Xtenant", "https://h/p/Xtenant/oauth2/v2.0/token"),
    ],
)
def test_the_proxy_and_token_paths_are_kept_character_for_character(
    proxy: str, tenant: str, endpoint: Optional[str]
) -> None:
    config = _detect(_workload(AZURE_KUBERNETES_TOKEN_PROXY=proxy, AZURE_TENANT_ID=tenant))
    if endpoint is None:
        assert config.problem is not None and config.problem[0] == "invalid_token_proxy"
    else:
        assert config.problem is None and config.endpoint == endpoint
