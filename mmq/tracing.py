"""Optional OpenTelemetry spans for a worker: one `mmq.job` span per job run and, inside it, one CLIENT span
per provider call following the OpenTelemetry GenAI semantic conventions.

Off unless MMQ_OTEL=1 *and* `opentelemetry-api` is importable (`pip install mmq[otel]`). When off, the
hooks are a module-level check returning shared no-op objects: no import attempt, no span, no
allocation per job. Where the spans go is the operator's choice through the standard OTEL_* variables:
a tracer provider already installed (`opentelemetry-instrument mmq worker`, or by an embedding program)
is used as is; otherwise, when `opentelemetry-sdk` is installed, `configure` builds one from
OTEL_TRACES_EXPORTER (`otlp`, the default, needs opentelemetry-exporter-otlp-proto-http; `console`;
`none`), OTEL_EXPORTER_OTLP_* (read by the exporter), OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
(service.name defaults to `mmq-worker`) and OTEL_BSP_* (the batch processor).

What a span carries is ids, names, counts and statuses, never content: no prompt, message, image, audio,
URL query, header, key or provider error message (those echo keys and prompts) is ever recorded; an
error is its `error.type` (a code or a status), not its text.

Operation names (`gen_ai.operation.name`, the spec's well-known values): a chat job is `chat`; the spec
has no value for image generation, speech or transcription/translation, so those use the closest one,
`generate_content`, with `gen_ai.output.type` = `image`, `speech` or `text` saying what was generated.
`gen_ai.provider.name` uses the spec's values where one exists (openai, anthropic, aws.bedrock,
azure.ai.openai, gcp.gemini, gcp.vertex_ai, groq) and mmq's provider name otherwise (deepgram,
elevenlabs, stability). An OpenAI-compatible server is `openai`, as the spec asks for a server reached
through OpenAI's API.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

try:  # once, at import: the hot path only ever reads `_tracer`
    from opentelemetry import trace as _otel
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # pragma: no cover - exercised where the API is not installed
    _otel = None  # type: ignore[assignment]

INSTALLED = _otel is not None
TRACER_NAME = "mmq"
log = logging.getLogger("mmq.tracing")

_tracer: Any = None  # set by `configure`: None = spans off (the no-op path)
_job: contextvars.ContextVar[Any] = contextvars.ContextVar("mmq_traced_job")

# mmq's provider names -> the GenAI conventions' gen_ai.provider.name values
PROVIDER_NAMES = {
    "openai": "openai",
    "openai-compatible": "openai",
    "azure-openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertex-anthropic": "gcp.vertex_ai",
    "groq": "groq",
}
# a job's kind -> (gen_ai.operation.name, gen_ai.output.type or None)
OPERATIONS = {
    "chat": ("chat", None),
    "image": ("generate_content", "image"),
    "speech": ("generate_content", "speech"),
    "transcription": ("generate_content", "text"),
    "translation": ("generate_content", "text"),
}


def enabled_in_env(environ: Any = os.environ) -> bool:
    return str(environ.get("MMQ_OTEL", "")).strip().lower() in ("1", "true", "yes", "on")


def configure(enabled: bool | None = None, tracer_provider: Any = None) -> bool:
    """Turn spans on or off (`enabled`: MMQ_OTEL unless given) and return whether they are on. With no
    `tracer_provider`, the global one is used, built from the OTEL_* variables when none is installed
    yet. Runs once at import; tests call it with their own provider."""
    global _tracer
    if enabled is None:
        enabled = enabled_in_env()
    if not (enabled and INSTALLED):
        _tracer = None
        return False
    if tracer_provider is None:
        _install_sdk_provider()
        tracer_provider = _otel.get_tracer_provider()
    _tracer = tracer_provider.get_tracer(TRACER_NAME)
    return True


def _install_sdk_provider() -> None:
    """An SDK tracer provider from the OTEL_* variables, unless one is installed already (the global
    provider is still the API's proxy). Without the SDK the API's no-op provider stays: spans cost
    little and go nowhere, which a warning says."""
    if not isinstance(_otel.get_tracer_provider(), _otel.ProxyTracerProvider):
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("MMQ_OTEL=1 but opentelemetry-sdk is not installed and no tracer provider is set")
        return
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": "mmq-worker"}))
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            continue
        if name != "otlp":
            log.warning("OTEL_TRACES_EXPORTER=%s is not one mmq builds (otlp, console, none)", name)
            continue
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http (mmq[otel])")
            continue
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _otel.set_tracer_provider(provider)


def enabled() -> bool:
    return _tracer is not None


# -- the job span -----------------------------------------------------------------------------------------


class _Seen:
    __slots__ = ("job",)

    def __init__(self) -> None:
        self.job: Any = None


def traced_job(run: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Wraps the job function: one `mmq.job` span around each run when spans are on; otherwise a direct
    call. Its attributes are the job's (`job_started` hands the record over) and its outcome."""

    @functools.wraps(run)
    async def run_job(ctx: dict[str, Any], job_id: str) -> dict[str, Any]:
        if _tracer is None:
            return await run(ctx, job_id)
        seen = _Seen()
        token = _job.set(seen)
        try:
            with _tracer.start_as_current_span(
                "mmq.job",
                kind=SpanKind.INTERNAL,
                attributes={"mmq.job.id": job_id},
                record_exception=False,  # an exception's text may hold what a span must not
                set_status_on_exception=False,
            ) as span:
                try:
                    out = await run(ctx, job_id)
                except BaseException as exc:
                    _job_outcome(span, seen.job, None, exc)
                    raise
                _job_outcome(span, seen.job, out, None)
                return out
        finally:
            _job.reset(token)

    return run_job


def job_started(job: Any) -> None:
    """The claimed job's record, for its span's attributes (read again when the run ends)."""
    if _tracer is None:
        return
    seen = _job.get(None)
    if seen is not None:
        seen.job = job


def _job_outcome(span: Any, job: Any, out: dict[str, Any] | None, exc: BaseException | None) -> None:
    attrs: dict[str, Any] = {}
    if job is not None:
        if job.batch_id:
            attrs["mmq.batch.id"] = job.batch_id
        if job.tenant:
            attrs["mmq.tenant"] = job.tenant
        attrs["mmq.job.kind"] = str(getattr(job.kind, "value", job.kind))
        attrs["mmq.job.cached"] = bool(job.cached)
        attrs["mmq.job.attempts"] = sum(a.repeats for a in job.attempts)
    if out is not None:
        status = out.get("status") or (str(job.status.value) if job is not None else None)
        if status:
            attrs["mmq.job.status"] = str(status)
        if out.get("cached"):
            attrs["mmq.job.cached"] = True
        if job is not None and job.error is not None and status == "failed":
            attrs["error.type"] = str(job.error.type)
            span.set_status(StatusCode.ERROR, str(job.error.type))
    elif exc is not None:
        if type(exc).__name__ == "Retry":  # arq's: the job runs again later
            attrs["mmq.job.status"] = "deferred"
        else:
            attrs["error.type"] = type(exc).__qualname__
            span.set_status(StatusCode.ERROR, type(exc).__qualname__)
    span.set_attributes(attrs)


# -- the provider call span -------------------------------------------------------------------------------


class _NoCall:
    """The call span when spans are off: one shared object, nothing recorded."""

    __slots__ = ()

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def answered(self, response: Any) -> None:
        return None


NO_CALL = _NoCall()


def call_span(target: Any, kind: Any, request: dict[str, Any]) -> Any:
    """A context manager around one provider call (a `with` block whose value takes the answer through
    `.answered(response)`; an exception leaving the block is the call's error)."""
    if _tracer is None:
        return NO_CALL
    return _CallSpan(target, kind, request)


class _CallSpan:
    __slots__ = ("_attrs", "_name", "_scope", "_span")

    def __init__(self, target: Any, kind: Any, request: dict[str, Any]) -> None:
        operation, output = OPERATIONS.get(str(getattr(kind, "value", kind)), ("generate_content", None))
        model = request.get("model")
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": PROVIDER_NAMES.get(target.provider, target.provider),
            "mmq.target": target.name,
        }
        if output:
            attrs["gen_ai.output.type"] = output
        if isinstance(model, str) and model:
            attrs["gen_ai.request.model"] = model
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            attrs["gen_ai.request.max_tokens"] = max_tokens
        try:
            url = urlsplit(target.base_url or "")
            if url.hostname:
                attrs["server.address"] = url.hostname
                attrs["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:
            pass
        self._name = f"{operation} {model}" if isinstance(model, str) and model else operation
        self._attrs = attrs
        self._span: Any = None
        self._scope: Any = None

    def __enter__(self) -> _CallSpan:
        self._span = _tracer.start_span(self._name, kind=SpanKind.CLIENT, attributes=self._attrs)
        self._scope = _otel.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )
        self._scope.__enter__()
        return self

    def answered(self, response: Any) -> None:
        attrs: dict[str, Any] = {"http.response.status_code": int(response.status)}
        body = response.body if isinstance(response.body, dict) else {}
        if isinstance(body.get("id"), str):
            attrs["gen_ai.response.id"] = body["id"]
        if isinstance(body.get("model"), str):
            attrs["gen_ai.response.model"] = body["model"]
        reasons = [
            c["finish_reason"]
            for c in body.get("choices") or ()
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
        ]
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        usage = response.usage if isinstance(response.usage, dict) else {}
        # OpenAI's chat names (prompt/completion) and its images/audio names (input/output)
        for attr, names in (
            ("gen_ai.usage.input_tokens", ("prompt_tokens", "input_tokens")),
            ("gen_ai.usage.output_tokens", ("completion_tokens", "output_tokens")),
        ):
            for name in names:
                value = usage.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    attrs[attr] = value
                    break
        self._span.set_attributes(attrs)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None:
                status = getattr(exc, "status", None)
                if isinstance(status, int):
                    self._span.set_attribute("http.response.status_code", status)
                error = _error_type(exc, status)
                self._span.set_attribute("error.type", error)
                self._span.set_status(StatusCode.ERROR, error)
        finally:
            self._scope.__exit__(exc_type, exc, tb)
            self._span.end()


def _error_type(exc: BaseException, status: Any) -> str:
    """Low-cardinality and free of content: the provider's error code, else its HTTP status, else the
    exception's class (TimeoutError, ConnectTimeout, ...)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code and len(code) <= 64:
        return code
    if isinstance(status, int):
        return str(status)
    return type(exc).__qualname__


configure()
