"""Distributed tracing of a token acquisition past the cache-hit path, through azure-core's tracing settings.

Off unless the application turned azure-core's tracing on (README.md, "Tracing"): either a tracing plugin
(``settings.tracing_implementation = "opentelemetry"`` with azure-core-tracing-opentelemetry) or, in azure-core 1.33
and later, its native OpenTelemetry tracing (``settings.tracing_enabled = True``). The cache-hit path never comes here.

One span per acquisition, named ``ManagedIdentityCredential.get_token`` (for ``get_token_info`` too), a child of the
caller's current span, made current while the acquisition runs so that the HTTP spans of azure-core's
``DistributedTracingPolicy`` (_transport/policies.py) are its children. Its attributes are facts about the
acquisition only (``SOURCE``, ``RESOURCE``, ``ATTEMPTS``, ``ORIGIN``, ``MACHINE_CACHE`` and, on failure,
``ERROR_CODE`` and ``error.type``); a failure sets the span's status to ERROR with the error code as its
description. No exception is recorded on it (an exception's message or chained causes are not put in a span), and
no token, secret header, key path or response body ever is.

Like azure-core's ``distributed_trace``, an acquisition inside an Azure SDK operation's span (a client's bearer token
policy asking for a token) adds no span of its own: the plugin makes a nested internal span non-recording, and the
native path is skipped while azure-core's decorator says a traced operation is running. The HTTP spans still appear,
under the SDK operation that needed the token.

This module imports neither azure-core's tracing nor OpenTelemetry until a span is wanted.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from ._version import VERSION

SPAN_NAME = "ManagedIdentityCredential.get_token"
LIBRARY_NAME = "msi-credential"

SOURCE = "msi_credential.source"  # the ManagedIdentitySource value, e.g. "imds"
RESOURCE = "msi_credential.resource"  # the resource the token is for (the scope without /.default)
ATTEMPTS = "msi_credential.attempts"  # HTTP requests it made (retries and Arc's challenge included)
ORIGIN = "msi_credential.token_origin"  # "endpoint" or "cache"
MACHINE_CACHE = "msi_credential.machine_cache"  # True when the token came from the opt-in machine cache
ERROR_CODE = "msi_credential.error_code"  # the error's snake_case code (docs/troubleshooting.md)
ERROR_TYPE = "error.type"  # the exception's qualified class name, as azure-core's spans name it

Attribute = Union[str, int, bool]


class AcquisitionSpan:
    """One started span, current until ``end()``: the plugin's (an AbstractSpan) or azure-core's native one."""

    __slots__ = ("_ended", "_native", "_scope", "_span", "_tracer")

    def __init__(self, span: Any, scope: Any, tracer: Any) -> None:
        self._span = span
        self._scope = scope  # the context manager that made the span current
        self._tracer = tracer  # azure-core's OpenTelemetryTracer on the native path, None for a plugin span
        self._native = tracer is not None
        self._ended = False

    def set(self, attributes: dict[str, Attribute]) -> None:
        try:
            self._set(attributes)
        except Exception as error:  # tracing is an observer: a broken tracer must not cost the token
            _tracer_failed("set", error)

    def fail(self, error: BaseException) -> None:
        """Mark the span failed with the error's code and class name: never its message."""
        try:
            self._fail(error)
        except Exception as problem:
            _tracer_failed("fail", problem)

    def end(self) -> None:
        """Leave the span's context and end it (once)."""
        if self._ended:
            return
        self._ended = True
        try:
            try:
                self._scope.__exit__(None, None, None)
            finally:
                if self._native:
                    self._span.end()
                else:
                    self._span.finish()
        except Exception as error:
            _tracer_failed("end", error)

    def _set(self, attributes: dict[str, Attribute]) -> None:
        if self._native:
            self._span.set_attributes(attributes)
        else:
            for key, value in attributes.items():
                self._span.add_attribute(key, value)

    def _fail(self, error: BaseException) -> None:
        error_type = type(error)
        module = error_type.__module__
        qualified = error_type.__qualname__ if module == "builtins" else f"{module}.{error_type.__qualname__}"
        code = getattr(error, "error_code", None)
        description = code if isinstance(code, str) and code else qualified
        attributes: dict[str, Attribute] = {ERROR_TYPE: qualified}
        if isinstance(code, str) and code:
            attributes[ERROR_CODE] = code
        self._set(attributes)
        if self._native:
            self._tracer.set_span_error_status(self._span, description)
            return
        instance = getattr(self._span, "span_instance", None)
        if instance is not None and hasattr(instance, "set_status"):
            from opentelemetry.trace import Status, StatusCode  # tracing is on: OpenTelemetry is loaded

            instance.set_status(Status(StatusCode.ERROR, description))


def _tracer_failed(step: str, error: Exception) -> None:
    import logging

    logging.getLogger("msi_credential").debug(
        "tracing: the acquisition span's %s failed (%s)", step, type(error).__name__
    )


def start(source: str, resource: str) -> Optional[AcquisitionSpan]:
    """A span for one acquisition, started and made current; None when azure-core's tracing is off.

    Whether tracing is on follows azure-core's own DistributedTracingPolicy: from azure-core 1.33 (native tracing),
    ``settings.tracing_enabled`` (which defaults to "a plugin is set"), then the plugin if one is set, else native
    OpenTelemetry; before 1.33, a plugin set is the switch. A tracing failure never fails the acquisition.
    """
    from azure.core.settings import settings

    try:
        native = _native_tracer_source()
        if native is not None and not settings.tracing_enabled():
            return None
        attributes: dict[str, Attribute] = {SOURCE: source, RESOURCE: resource}
        plugin = settings.tracing_implementation()
        if plugin is not None:
            return _start_plugin(plugin, attributes)
        if native is None:
            return None
        return _start_native(native, attributes)
    except Exception as error:  # tracing is an observer: a broken tracer must not cost the token
        _tracer_failed("start", error)
        return None


_NATIVE: list[Any] = []  # azure-core's get_tracer, or None before azure-core 1.33: looked up once


def _native_tracer_source() -> Any:
    if not _NATIVE:
        try:
            from azure.core.instrumentation import get_tracer
        except ImportError:
            _NATIVE.append(None)
        else:
            _NATIVE.append(get_tracer)
    return _NATIVE[0]


def _start_plugin(plugin: Any, attributes: dict[str, Attribute]) -> AcquisitionSpan:
    from azure.core.tracing import SpanKind

    span = plugin(name=SPAN_NAME, kind=SpanKind.INTERNAL)
    for key, value in attributes.items():
        span.add_attribute(key, value)
    scope = plugin.change_context(span)  # current until end(), which leaves it and finishes the span
    scope.__enter__()
    return AcquisitionSpan(span, scope, None)


def _start_native(get_tracer: Any, attributes: dict[str, Attribute]) -> Optional[AcquisitionSpan]:
    from azure.core.tracing import SpanKind

    if _inside_traced_operation():
        return None
    tracer = get_tracer(library_name=LIBRARY_NAME, library_version=VERSION)
    if tracer is None:  # opentelemetry-api is not installed
        return None
    span = tracer.start_span(SPAN_NAME, kind=SpanKind.INTERNAL, attributes=attributes)
    scope = tracer.use_span(span, end_on_exit=False)
    scope.__enter__()
    return AcquisitionSpan(span, scope, tracer)


def _inside_traced_operation() -> bool:
    """True while azure-core's ``distributed_trace`` runs a traced SDK operation (its nested calls are not traced)."""
    try:
        from azure.core.tracing.decorator import _in_span_context
    except ImportError:
        return False
    return bool(_in_span_context.get())
