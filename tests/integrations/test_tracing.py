"""msi_credential/_tracing.py, and azure-core's DistributedTracingPolicy in
msi_credential/_transport/policies.py: distributed tracing on both faces, with azure-core's tracing plugin and
its native OpenTelemetry tracing, against the emulator, exported by opentelemetry-sdk's in-memory exporter.
The HTTP spans stay here beside the acquisition's: one tracer provider per process serves both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.settings import settings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from msi_credential import ManagedIdentityError, _tracing
from msi_credential.emulator import Fault

from ..faces.support import secrets_of
from ..skips import skip_or_fail_in_ci

STORAGE = "https://storage.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
SPAN = "ManagedIdentityCredential.get_token"

_EXPORTER: list[InMemorySpanExporter] = []


def _exporter() -> InMemorySpanExporter:
    """One tracer provider for the process (OpenTelemetry allows the global one to be set once)."""
    if not _EXPORTER:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _EXPORTER.append(exporter)
    return _EXPORTER[0]


@pytest.fixture
def untraced() -> Iterator[InMemorySpanExporter]:
    """The exporter, with azure-core's tracing settings at their defaults (off) before and after the test."""
    exporter = _exporter()
    settings.tracing_implementation.unset_value()
    settings.tracing_enabled.unset_value()
    exporter.clear()
    yield exporter
    settings.tracing_implementation.unset_value()
    settings.tracing_enabled.unset_value()
    exporter.clear()


def _native_tracing_or_skip() -> None:
    try:
        import azure.core.instrumentation  # noqa: F401
    except ImportError:
        skip_or_fail_in_ci("azure-core's native tracing and tracing_enabled switch came in azure-core 1.33")


@pytest.fixture(params=["plugin", "native"])
def traced(request: pytest.FixtureRequest, untraced: InMemorySpanExporter) -> InMemorySpanExporter:
    """Tracing on, as an application turns it on: azure-core-tracing-opentelemetry's plugin, or azure-core's
    native OpenTelemetry tracing. The settings are reset after the test (the ``untraced`` fixture)."""
    if request.param == "plugin":
        settings.tracing_implementation = "opentelemetry"
    else:
        _native_tracing_or_skip()
        settings.tracing_enabled = True
    return untraced


def _finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def _acquisitions(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.name == SPAN]


def _http(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.kind == trace.SpanKind.CLIENT]


def _parent_id(span: ReadableSpan) -> Any:
    return span.parent.span_id if span.parent is not None else None


def _status_code(span: ReadableSpan) -> Any:
    """The HTTP status on an HTTP span (older azure-core-tracing-opentelemetry: the older attribute name)."""
    attributes = span.attributes or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


def _texts(spans: list[ReadableSpan]) -> list[str]:
    """Everything a span exporter would send: names, attribute values, events and their attributes, statuses."""
    texts: list[str] = []
    for span in spans:
        texts.append(span.name)
        texts += [f"{key}={value}" for key, value in (span.attributes or {}).items()]
        for event in span.events:
            texts.append(event.name)
            texts += [f"{key}={value}" for key, value in (event.attributes or {}).items()]
        texts.append(str(span.status.description))
        for link in span.links:
            texts += [f"{key}={value}" for key, value in (link.attributes or {}).items()]
    return texts


def test_the_acquisition_span_is_the_callers_child_and_the_http_spans_its_children(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter
) -> None:
    emulator = emulator_factory("azure_arc")  # the challenge: two HTTP requests for one token
    credential = face.credential(emulator)

    with trace.get_tracer("the-application").start_as_current_span("caller") as caller:
        assert credential.get_token(STORAGE).token

    spans = _finished(traced)
    (acquisition,) = _acquisitions(spans)
    assert _parent_id(acquisition) == caller.get_span_context().span_id
    assert acquisition.kind == trace.SpanKind.INTERNAL
    assert acquisition.context.trace_id == caller.get_span_context().trace_id
    http = _http(spans)
    assert len(http) == 2
    assert all(_parent_id(span) == acquisition.context.span_id for span in http)
    assert [_status_code(span) for span in http] == [401, 200]
    assert dict(acquisition.attributes or {}) == {
        _tracing.SOURCE: "azure_arc",
        _tracing.RESOURCE: "https://storage.azure.com",
        _tracing.ATTEMPTS: 2,
        _tracing.ORIGIN: "endpoint",
        _tracing.MACHINE_CACHE: False,
    }
    assert acquisition.status.status_code == trace.StatusCode.UNSET
    # the trace context went to the endpoint, as azure-identity's pipeline sends it
    assert all("traceparent" in request.headers for request in emulator.requests)


def test_a_cache_hit_starts_no_span_and_does_not_look_at_the_tracing_settings(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = face.credential(emulator_factory("imds"))
    credential.get_token(STORAGE)
    traced.clear()

    def refuse(*args: Any) -> None:
        raise AssertionError("a cache hit consulted the tracing settings")

    monkeypatch.setattr(_tracing, "start", refuse)
    with trace.get_tracer("the-application").start_as_current_span("caller"):
        credential.get_token(STORAGE)
        credential.get_token_info(STORAGE)

    assert [span.name for span in _finished(traced)] == ["caller"]


def test_with_tracing_off_no_span_is_made(
    face: Any, emulator_factory: Any, untraced: InMemorySpanExporter
) -> None:
    # before azure-core 1.33, an imported OpenTelemetry with the plugin installed turned tracing on by itself
    _native_tracing_or_skip()
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    with trace.get_tracer("the-application").start_as_current_span("caller"):
        credential.get_token(STORAGE)

    assert [span.name for span in _finished(untraced)] == ["caller"]
    assert not any("traceparent" in request.headers for request in emulator.requests)


def test_a_failed_acquisition_span_has_the_error_code_and_no_exception_text(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(400, {"statusCode": 400, "message": "a message that stays out of spans"}))
    credential = face.credential(emulator, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    spans = _finished(traced)
    (acquisition,) = _acquisitions(spans)
    code = caught.value.error_code
    assert acquisition.status.status_code == trace.StatusCode.ERROR
    assert acquisition.status.description == code
    assert acquisition.attributes[_tracing.ERROR_CODE] == code  # type: ignore[index]
    assert acquisition.attributes[_tracing.ERROR_TYPE] == (  # type: ignore[index]
        f"{type(caught.value).__module__}.{type(caught.value).__qualname__}"
    )
    assert acquisition.attributes[_tracing.ATTEMPTS] == 1  # type: ignore[index]
    assert not acquisition.events
    assert not [text for text in _texts(spans) if "stays out of spans" in text]


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="the machine cache is POSIX-only")
def test_a_token_from_the_machine_cache_says_so_on_its_span(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter, tmp_path: Path
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    emulator = emulator_factory("app_service")
    environ = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    face.credential(emulator, _environ=environ, machine_cache=True).get_token(STORAGE)
    traced.clear()

    token = face.credential(emulator, _environ=environ, machine_cache=True).get_token(STORAGE)

    assert token.token
    (acquisition,) = _acquisitions(_finished(traced))
    assert acquisition.attributes[_tracing.MACHINE_CACHE] is True  # type: ignore[index]
    assert acquisition.attributes[_tracing.ORIGIN] == "cache"  # type: ignore[index]
    assert acquisition.attributes[_tracing.ATTEMPTS] == 0  # type: ignore[index]
    assert not _http(_finished(traced))


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc", "service_fabric", "cloud_shell"])
def test_no_secret_token_or_key_path_reaches_a_span(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter, source: str
) -> None:
    emulator = emulator_factory(source)
    credential = face.credential(emulator, retry_total=1)
    token = credential.get_token(STORAGE).token
    # Failing answers that echo the secret the endpoint was given, or the token itself, as a careless server might.
    echo = " ".join(
        value for name, value in emulator.environ.items() if name in ("IDENTITY_HEADER", "MSI_SECRET")
    )
    for fault in (
        Fault(
            500, {"error": "server_error", "error_description": f"echo {echo} {token}", "correlation_id": "c"}
        ),
        Fault(400, {"statusCode": 400, "message": f"bad {echo}", "correlationId": "c"}),
        Fault(200, {"access_token": token, "expires_in": "soon"}),
        Fault(403, {"error": {"code": "Forbidden", "message": f"{echo} {token}", "correlationId": "c"}}),
    ):
        emulator.script(fault, fault, fault, fault)
        with pytest.raises(ManagedIdentityError):
            credential.get_token(VAULT, claims="{}")

    spans = _finished(traced)
    assert len(_acquisitions(spans)) == 5
    secrets = secrets_of(emulator)
    assert token in secrets
    if source in ("app_service", "service_fabric", "azure_arc"):
        assert len(secrets) >= 2
    key_directory = emulator.credential_kwargs.get("_arc_key_directory")
    if key_directory:
        secrets.append(key_directory)  # the realm of Arc's challenge names the key file
    texts = _texts(spans)
    leaks = [(secret[:6] + "...", text[:40]) for text in texts for secret in secrets if secret in text]
    assert not leaks, f"{len(leaks)} secret(s) reached a span"  # the message itself names no secret


def test_inside_an_sdk_operation_the_http_spans_go_under_the_operation(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter
) -> None:
    """As azure-core's ``distributed_trace`` does for nested SDK calls: the token requested by a client's bearer token
    policy adds no span of its own inside the operation's span, and its HTTP spans are the operation's children."""
    from azure.core.tracing.decorator import distributed_trace

    credential = face.credential(emulator_factory("imds"))

    @distributed_trace(name_of_span="Client.operation")
    def operation() -> Any:
        return credential.get_token(STORAGE)

    assert operation().token

    spans = _finished(traced)
    (outer,) = [span for span in spans if span.name == "Client.operation"]
    assert not _acquisitions(spans)
    (http,) = _http(spans)
    assert _parent_id(http) == outer.context.span_id


class _BrokenSpan:
    """A tracing plugin that fails at every step after its span was made: the token must not be lost to it."""

    def __init__(self, name: str = "span", **kwargs: Any) -> None:
        self.finished = False

    def add_attribute(self, key: str, value: Any) -> None:
        if key != _tracing.SOURCE and key != _tracing.RESOURCE:
            raise RuntimeError("broken tracer")

    @classmethod
    def change_context(cls, span: Any) -> Any:
        class Scope:
            def __enter__(self) -> None:
                return None

            def __exit__(self, *args: Any) -> None:
                raise RuntimeError("broken tracer")

        return Scope()

    def finish(self) -> None:
        raise RuntimeError("broken tracer")


@pytest.mark.parametrize("fails", [False, True])
def test_a_broken_tracing_plugin_does_not_cost_the_token_or_the_error(
    face: Any, emulator_factory: Any, untraced: InMemorySpanExporter, fails: bool
) -> None:
    emulator = emulator_factory("imds")
    settings.tracing_implementation = _BrokenSpan
    credential = face.credential(emulator, retry_total=0)
    if fails:
        emulator.script(Fault(400, {"error": "invalid_request", "error_description": "Identity not found"}))
        with pytest.raises(ManagedIdentityError):
            credential.get_token(STORAGE)
    else:
        assert credential.get_token(STORAGE).token


def test_azure_cores_tracing_keywords_shape_the_http_spans(
    face: Any, emulator_factory: Any, traced: InMemorySpanExporter
) -> None:
    """``tracing_attributes`` and ``network_span_namer``, which azure-identity's pipeline takes, are taken and reach
    azure-core's DistributedTracingPolicy rather than being refused or ignored."""
    credential = face.credential(
        emulator_factory("imds"),
        tracing_attributes={"app.tier": "web"},
        network_span_namer=lambda request: "token request",
    )
    credential.get_token(STORAGE)

    (http,) = _http(_finished(traced))
    assert http.name == "token request"
    assert (http.attributes or {}).get("app.tier") == "web"
