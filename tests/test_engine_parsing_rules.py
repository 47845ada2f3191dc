"""The engine's parsing and deciding rules, checked at their edges (issue 13, mutation testing).

Each test names the rule. They call the engine's pure functions (responses, expiry, retry delays, detection,
identity and scope arguments, cache entries) directly: no sockets, no clock, so they also serve the
mutation-testing run of docs/mutation.md.
"""

from __future__ import annotations

import weakref
from typing import Optional

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine import cache
from msi_credential._engine.detection import (
    ARC_DEFAULT_ENDPOINT,
    IMDS_PATH,
    SourceConfig,
    detect,
    is_local_host,
)
from msi_credential._engine.effects import MAX_BODY_BYTES, Response
from msi_credential._engine.expiry import ExpiryError, parse_expires_on, parse_seconds, token_times
from msi_credential._engine.identity import Identity, identity_from_arguments
from msi_credential._engine.response import error_from_response, parse_token, scrub, snake_case
from msi_credential._engine.retry import retry_after
from msi_credential._engine.scopes import resource_from_scopes

IMDS = ManagedIdentitySource.IMDS
APP_SERVICE = ManagedIdentitySource.APP_SERVICE
SERVICE_FABRIC = ManagedIdentitySource.SERVICE_FABRIC
CLOUD_SHELL = ManagedIdentitySource.CLOUD_SHELL


def _answer(status: int, body: bytes = b"{}") -> Response:
    return Response(status, {}, body)


def _error(status: int, body: bytes, source: ManagedIdentitySource) -> ManagedIdentityError:
    return error_from_response(_answer(status, body), source=source)


# ----------------------------------------------------------------------------------- error answers (section 4)


def test_imds_unreachable_403_says_imds_is_unreachable_from_this_host() -> None:
    error = _error(403, b'{"error_description": "Destination unreachable"}', IMDS)
    assert error.error_code == "imds_unreachable"
    assert error.message == "IMDS is unreachable from this host (HTTP 403): Destination unreachable"


def test_imds_400_whose_server_code_is_an_unknown_resource_is_invalid_resource() -> None:
    # the AADSTS code may come as the error code alone, with a description that does not repeat it
    error = _error(400, b'{"error": "AADSTS500011", "error_description": "no such app"}', IMDS)
    assert error.error_code == "invalid_resource"
    assert error.message == "IMDS refused the resource (HTTP 400, AADSTS500011): no such app"


def test_imds_400_without_a_server_code_is_identity_not_found_not_a_resource_problem() -> None:
    error = _error(400, b'{"error_description": "None of the identities match"}', IMDS)
    assert error.error_code == "identity_not_found"


def test_app_service_400_about_the_managed_identity_says_it_could_not_load_it() -> None:
    error = _error(400, b'{"message": "Unable to load the proper Managed Identity."}', APP_SERVICE)
    assert error.error_code == "identity_not_found"
    assert error.message == (
        "App Service managed identity endpoint could not load the managed identity (HTTP 400): "
        "Unable to load the proper Managed Identity."
    )


def test_service_fabric_404_says_the_application_has_no_managed_identity() -> None:
    error = _error(404, b"{}", SERVICE_FABRIC)
    assert error.error_code == "identity_not_found"
    assert error.message == (
        "Service Fabric managed identity endpoint has no managed identity for this application (HTTP 404)"
    )


def test_a_refusal_without_a_specific_rule_says_the_endpoint_refused_the_token_request() -> None:
    error = _error(401, b'{"error": "Unauthorized", "correlation_id": "c-1"}', APP_SERVICE)
    assert error.error_code == "unauthorized"
    assert error.status_code == 401
    assert error.message == (
        "App Service managed identity endpoint refused the token request (HTTP 401, Unauthorized) "
        "[correlation id c-1]"
    )


def test_a_service_fabric_known_code_keeps_the_refusal_summary() -> None:
    error = _error(401, b'{"error": {"code": "SecretHeaderNotFound"}}', SERVICE_FABRIC)
    assert error.error_code == "secret_header_not_found"
    assert error.message == (
        "Service Fabric managed identity endpoint refused the token request (HTTP 401, SecretHeaderNotFound)"
    )


def test_a_redirect_says_redirects_are_refused() -> None:
    error = _error(302, b"{}", APP_SERVICE)
    assert error.error_code == "unexpected_redirect"
    assert error.message == (
        "App Service managed identity endpoint redirected the token request; redirects are refused (HTTP 302)"
    )


def test_a_2xx_handed_to_the_error_mapping_is_an_unexpected_invalid_response() -> None:
    error = _error(204, b"{}", APP_SERVICE)
    assert error.error_code == "invalid_response"
    assert error.status_code == 204
    assert error.message == (
        "App Service managed identity endpoint answered 204 without a usable token: unexpected answer"
    )


# ------------------------------------------------------------------------------------ token answers (section 3)


def test_an_oversized_token_answer_is_response_too_large_with_its_status_and_source() -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(_answer(200, b" " * (MAX_BODY_BYTES + 1)), source=APP_SERVICE, start=0.0)
    assert (caught.value.error_code, caught.value.status_code, caught.value.source) == (
        "response_too_large",
        200,
        APP_SERVICE,
    )


def test_a_non_json_answer_from_imds_is_unavailable_with_its_status_and_source() -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(_answer(200, b"<html>"), source=IMDS, start=0.0)
    assert (caught.value.error_code, caught.value.status_code, caught.value.source) == (
        "imds_unreachable",
        200,
        IMDS,
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[1]", "the body is not a JSON object"),
        (b'{"expires_in": 3600}', "the body has no access_token string"),
        (b'{"access_token": "t", "expires_in": "soon"}', "expires_in is not a number of seconds"),
    ],
)
def test_an_unusable_token_answer_is_invalid_response_naming_its_status_and_why(
    body: bytes, why: str
) -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(_answer(201, body), source=CLOUD_SHELL, start=1000.0)
    assert caught.value.error_code == "invalid_response"
    assert caught.value.status_code == 201
    assert caught.value.message == (
        f"Cloud Shell managed identity endpoint answered 201 without a usable token: {why}"
    )


# ------------------------------------------------------------------------------------ scrubbing, error codes


def test_a_secret_of_four_characters_is_scrubbed_from_echoes() -> None:
    assert scrub("echo abcd", ["abcd"]) == "echo ***"


def test_secrets_shorter_than_four_characters_are_not_scrubbed_in_any_form() -> None:
    # "abc" in hex is 616263: scrubbing every short secret's encodings would mangle ordinary text
    assert scrub("code 616263 YWJj", ["abc", ""]) == "code 616263 YWJj"


def test_a_server_error_code_becomes_snake_case_of_at_most_64_characters() -> None:
    assert snake_case("a" * 100) == "a" * 64


# ------------------------------------------------------------------------------------------- expiry (section 3)


def _iso_of_length(length: int) -> str:
    head = "2026-01-01T00:00:00."
    return head + "5" * (length - len(head) - 1) + "Z"


@pytest.mark.parametrize("length", [63, 64])
def test_an_iso_expiry_of_up_to_64_characters_is_parsed(length: int) -> None:
    assert parse_expires_on(_iso_of_length(length)) == 1767225600


@pytest.mark.parametrize("length", [65, 100])
def test_an_iso_expiry_longer_than_64_characters_is_refused(length: int) -> None:
    assert parse_expires_on(_iso_of_length(length)) is None


def test_an_iso_fraction_is_read_as_a_decimal_fraction() -> None:
    # 0.1 s, not 1 us: at year 1 the float timestamp keeps the difference, and int() rounds toward zero
    assert parse_expires_on("0001-01-01T00:00:00.1Z") == -62135596799
    assert parse_expires_on("0001-01-01T00:00:00.000001Z") == -62135596800


def test_a_numeric_string_of_15_digits_is_seconds_and_16_digits_are_refused() -> None:
    assert parse_seconds("123456789012345") == 123456789012345
    assert parse_seconds("1234567890123456") is None


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"expires_in": "x", "expires_on": None}, "expires_in is not a number of seconds"),
        ({"expires_in": None, "expires_on": "someday"}, "expires_on is not in a known format"),
        ({"expires_in": None, "expires_on": None}, "the response has neither expires_in nor expires_on"),
        ({"expires_in": 0, "expires_on": None}, "the token has already expired"),
        ({"expires_in": 8 * 24 * 3600, "expires_on": None}, "the token's lifetime is over 7 days"),
    ],
)
def test_an_unusable_expiry_says_why(fields: dict[str, object], why: str) -> None:
    with pytest.raises(ExpiryError) as caught:
        token_times(start=1000.0, refresh_in=None, **fields)
    assert str(caught.value) == why


def test_refresh_in_of_one_second_is_honoured() -> None:
    assert token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=1) == (4600, 1001)


def test_refresh_in_of_zero_is_ignored_for_the_default_refresh_time() -> None:
    assert token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=0) == (4600, 4300)


# ------------------------------------------------------------------------------------- retry delays (section 7)


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after-ms": "soon", "x-ms-retry-after-ms": "2000"}, 2.0),  # an unparsable header is skipped
        ({"retry-after-ms": "-5", "retry-after": "3"}, 3.0),  # a negative delay is skipped
        ({"retry-after-ms": "0", "retry-after": "3"}, 0.0),  # zero is a delay
        ({"retry-after-ms": "500", "retry-after": "3"}, 0.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
    ],
)
def test_retry_after_headers_give_the_server_delay(headers: dict[str, str], delay: Optional[float]) -> None:
    assert retry_after(headers, now=0.0) == delay


# --------------------------------------------------------------------------------------- scopes and identities


def test_a_scope_ending_twice_in_default_is_refused_saying_so() -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes(("https://vault.azure.net/.default/.default",))
    assert str(caught.value) == "a scope may end with '/.default' once, not twice"


def test_a_scope_that_is_not_a_string_is_refused_naming_its_type() -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes((42,))  # type: ignore[arg-type]
    assert str(caught.value) == "a scope must be a string, not int"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"client_id": 7}, "client_id must be a string, not int"),
        ({"object_id": " \n "}, "object_id must be a non-empty string without control characters"),
        (
            {"identity_config": {"mi_res_id": "\x00"}},
            "identity_config['mi_res_id'] must be a non-empty string without control characters",
        ),
        (
            {"identity_config": ["client_id"]},
            "identity_config must be a mapping of parameter names to strings",
        ),
        ({"identity_config": {"": "x"}}, "identity_config keys must be non-empty strings"),
        (
            {"client_id": "a", "identity_config": {"msi_res_id": "/r"}},
            "specify at most one of client_id, object_id and resource_id "
            "(got client_id, identity_config['msi_res_id']); a credential has one identity",
        ),
    ],
)
def test_identity_arguments_that_are_refused_say_which_and_why(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        identity_from_arguments(**arguments)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_identity_config_entries_after_a_none_value_are_still_read() -> None:
    identity = identity_from_arguments(identity_config={"skipped": None, "api-extra": "1", "client_id": "c"})
    assert identity == Identity(kind="client_id", value="c", extra=(("api-extra", "1"),))


# ------------------------------------------------------------------------------------------------ cache entries


def test_a_cache_entry_without_refresh_on_refreshes_at_expiry_and_keeps_the_access_token() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 5000), start=1000.0)
    assert entry.refresh_on == 5000.0
    assert entry.access_token == AccessToken("t", 5000)
    assert entry.mandatory_at == 5000 - 60


def test_the_mandatory_window_of_a_sub_second_token_is_a_quarter_of_its_lifetime() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 1001), start=1000.5)
    assert entry.mandatory_at == 1001 - 0.125


def test_the_mandatory_window_of_an_already_expired_token_is_empty() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 1000), start=2000.0)
    assert entry.mandatory_at == 1000


class _RacedBuckets(weakref.WeakValueDictionary):  # type: ignore[type-arg]
    """Another thread creates the bucket between the lock-free lookup and the lookup under the lock."""

    def __init__(self, key: cache.BucketKey) -> None:
        super().__init__()
        self.key = key
        self.winner = cache.Bucket(shared=True)
        self.raced = False

    def get(self, key: object, default: object = None) -> object:
        value = super().get(key, default)
        if not self.raced:
            self.raced = True
            self[self.key] = self.winner
        return value


def test_a_shared_bucket_created_by_a_racing_thread_is_the_one_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key: cache.BucketKey = ("source", "endpoint", "identity")
    raced = _RacedBuckets(key)
    monkeypatch.setattr(cache, "_shared_buckets", raced)
    assert cache.bucket_for(key, shared=True) is raced.winner
    assert cache.bucket_for(key, shared=True) is raced.winner


# ------------------------------------------------------------------------------------------ detection (section 1)


def _arc_windows(**environ: str) -> SourceConfig:
    return detect(
        {
            "IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t",
            "IMDS_ENDPOINT": "http://127.0.0.1:40342",
            **environ,
        },
        platform="win32",
        path_exists=lambda _: False,
    )


@pytest.mark.parametrize(
    ("environ", "directory"),
    [
        ({}, "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens"),
        ({"PROGRAMDATA": "D:\\Data"}, "D:\\Data\\AzureConnectedMachineAgent\\Tokens"),
        ({"ProgramData": "D:\\Data\\"}, "D:\\Data\\AzureConnectedMachineAgent\\Tokens"),
        ({"ProgramData": "\\\\server\\share"}, "\\\\server\\share\\AzureConnectedMachineAgent\\Tokens"),
    ],
)
def test_arc_key_directory_on_windows_is_under_program_data(environ: dict[str, str], directory: str) -> None:
    assert _arc_windows(**environ).arc_key_directory == directory


def test_arc_on_windows_is_found_by_himds_under_upper_case_program_files() -> None:
    himds = "D:\\Programs\\AzureConnectedMachineAgent\\himds.exe"
    config = detect({"PROGRAMFILES": "D:\\Programs\\"}, platform="win32", path_exists=lambda p: p == himds)
    assert (config.source, config.endpoint, config.platform) == (
        ManagedIdentitySource.AZURE_ARC,
        ARC_DEFAULT_ENDPOINT,
        "windows",
    )


def test_any_linux_platform_string_counts_as_linux_for_arc() -> None:
    config = detect({}, platform="linux2", path_exists=lambda p: p == "/opt/azcmagent/bin/himds")
    assert config.platform == "linux"


def test_the_default_imds_configuration_names_no_endpoint_variable() -> None:
    config = detect({}, platform="linux", path_exists=lambda _: False)
    assert config == SourceConfig(IMDS, "http://169.254.169.254" + IMDS_PATH, "")
    assert config.endpoint_variable == ""


def _workload(**environ: str) -> SourceConfig:
    return detect(
        {"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "tenant", **environ},
        platform="linux",
        path_exists=lambda _: False,
    )


@pytest.mark.parametrize("tenant", [".", ".."])
def test_a_tenant_id_of_dots_only_is_refused(tenant: str) -> None:
    problem = _workload(AZURE_TENANT_ID=tenant).problem
    assert problem is not None and problem[0] == "invalid_tenant_id"


@pytest.mark.parametrize(
    ("authority", "accepted"),
    [
        ("http://localhost:8080", True),
        ("http://127.0.0.1:8080", True),
        ("http://169.254.1.1", False),  # link-local is this machine's IMDS, not an authority
        ("http://10.0.0.1", False),
        ("https://login.example", True),
    ],
)
def test_a_plain_http_authority_is_accepted_only_for_loopback(authority: str, accepted: bool) -> None:
    problem = _workload(AZURE_AUTHORITY_HOST=authority).problem
    assert (problem is None) is accepted
    if not accepted:
        assert problem is not None and problem[0] == "invalid_endpoint"


@pytest.mark.parametrize(
    ("pod_host", "endpoint"),
    [
        ("http://127.0.0.1:8080/some/path/", "http://127.0.0.1:8080" + IMDS_PATH),
        ("localhost:8080/", "localhost:8080" + IMDS_PATH),  # no scheme: taken as it is, less the '/'
        ("http://[::1/", "http://[::1" + IMDS_PATH),  # not a URL: taken as it is, less the '/'
    ],
)
def test_pod_identity_replaces_only_the_origin_of_the_imds_endpoint(pod_host: str, endpoint: str) -> None:
    config = detect(
        {"AZURE_POD_IDENTITY_AUTHORITY_HOST": pod_host}, platform="linux", path_exists=lambda _: False
    )
    assert (config.source, config.endpoint, config.pod_identity) == (IMDS, endpoint, True)


def test_an_endpoint_with_a_port_but_no_host_is_refused() -> None:
    config = detect({"MSI_ENDPOINT": "http://:80/token"}, platform="linux", path_exists=lambda _: False)
    assert config.problem is not None and config.problem[0] == "invalid_endpoint"


def test_a_service_fabric_endpoint_with_a_bad_port_is_refused() -> None:
    config = detect(
        {
            "IDENTITY_ENDPOINT": "https://fabric:port/",
            "IDENTITY_HEADER": "h",
            "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
        },
        platform="linux",
        path_exists=lambda _: False,
    )
    assert config.source is SERVICE_FABRIC
    assert config.problem == (
        "invalid_endpoint",
        "IDENTITY_ENDPOINT must be an https:// URL with a host for Service Fabric",
    )


@pytest.mark.parametrize(
    ("environ", "source", "variable"),
    [
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "a\x01b"},
            APP_SERVICE,
            "IDENTITY_HEADER",
        ),
        (
            {"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "a\x7fb"},
            ManagedIdentitySource.MACHINE_LEARNING,
            "MSI_SECRET",
        ),
    ],
)
def test_a_secret_with_control_characters_makes_the_configuration_unusable_naming_the_variable(
    environ: dict[str, str], source: ManagedIdentitySource, variable: str
) -> None:
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert config.source is source
    assert config.endpoint == "http://127.0.0.1:1/t"
    assert config.problem == ("invalid_secret", f"{variable} contains control or non-ASCII characters")


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("::1", True),  # an IPv6 host is recognised without its brackets
        ("a:b", False),
        ("999.0.0.1", False),
        ("127.0.0.01", False),
        ("127.0.0.1", True),
        ("169.254.169.254", True),
    ],
)
def test_which_hosts_are_this_machine(host: str, local: bool) -> None:
    assert is_local_host(host) is local


def test_a_long_server_code_and_correlation_id_are_cut_to_100_characters() -> None:
    body = b'{"error": "' + b"E" * 150 + b'", "correlation_id": "' + b"c" * 150 + b'"}'
    error = _error(500, body, APP_SERVICE)
    assert error.correlation_id == "c" * 100
    assert error.message == (
        f"App Service managed identity endpoint refused the token request (HTTP 500, {'E' * 100}) "
        f"[correlation id {'c' * 100}]"
    )


_UNSAFE = "contains whitespace, control or non-ASCII characters, or a '#' fragment"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t#x"}, "MSI_ENDPOINT"),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t#x", "IMDS_ENDPOINT": "http://127.0.0.1:40342"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t", "IMDS_ENDPOINT": "http://127.0.0.1:40342#x"},
            "IMDS_ENDPOINT",
        ),
    ],
)
def test_an_endpoint_variable_with_a_fragment_makes_the_configuration_unusable_naming_it(
    environ: dict[str, str], variable: str
) -> None:
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert config.problem == ("invalid_endpoint", f"{variable} {_UNSAFE}")


def test_imds_endpoint_is_checked_only_for_arc_that_uses_it() -> None:
    environ = {
        "IDENTITY_ENDPOINT": "http://127.0.0.1:1/t",
        "IDENTITY_HEADER": "h",
        "IMDS_ENDPOINT": "http://x#y",
    }
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert (config.source, config.problem) == (APP_SERVICE, None)


def _entry(expires_on: int) -> cache.CacheEntry:
    return cache.CacheEntry.create(AccessTokenInfo("t", expires_on), start=0.0)


def test_a_sweep_drops_the_tokens_expired_by_now_and_keeps_the_others() -> None:
    bucket = cache.Bucket()
    for i in range(80):
        bucket[f"live{i}"] = _entry(2000)
    for i in range(10):
        bucket[f"expired{i}"] = _entry(1000)  # expires exactly now: no longer servable
    bucket.sweep(1000.0)
    assert sorted(bucket) == sorted(f"live{i}" for i in range(80))
    assert bucket.sweep_at == 160  # the next sweep when the bucket has doubled


def test_a_sweep_that_empties_most_of_a_bucket_keeps_the_live_entries() -> None:
    bucket = cache.Bucket()
    live = _entry(2000)
    bucket["live"] = live
    for i in range(70):
        bucket[f"expired{i}"] = _entry(1000)
    bucket.sweep(1500.0)
    assert dict(bucket) == {"live": live}
    assert bucket.sweep_at == 64


def test_storing_sweeps_the_bucket_once_it_reaches_its_sweep_size() -> None:
    bucket = cache.Bucket()
    for i in range(31):
        cache.store(bucket, f"https://expired{i}", _entry(1000), now=500.0)
    assert len(bucket) == 62
    cache.store(bucket, "https://live", _entry(5000), now=1000.0)  # 64 keys: the sweep size
    assert sorted(bucket) == ["https://live", "https://live/.default"]


def test_a_secret_echoed_percent_encoded_character_by_character_is_scrubbed() -> None:
    assert scrub("echo %61%62%63%64 here", ["abcd"]) == "echo *** here"


def test_a_secret_echoed_in_our_percent_encoding_is_scrubbed_leaving_other_escapes_alone() -> None:
    assert scrub("a%20b%2Fcd at 100%25", ["a b/cd"]) == "*** at 100%25"


def test_a_secret_echoed_as_unpadded_base64_is_scrubbed() -> None:
    assert scrub("got YWJjZGU.", ["abcde"]) == "got ***."


def test_every_secret_is_scrubbed_whatever_its_case_and_padding() -> None:
    assert scrub("one ABCD two wxyz three YWJjZGU=", ["abcd", "wxyz", "abcde"]) == "one *** two *** three ***"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10**15, 10**15),
        (-(10**15), -(10**15)),
        (10**15 + 1, None),
        (1e15, 10**15),
        (1e16, None),
        (-1e16, None),
    ],
)
def test_numbers_of_seconds_are_read_up_to_10_to_the_15(value: object, seconds: Optional[int]) -> None:
    assert parse_seconds(value) == seconds
