"""Traces and metrics, exported the standard way, with a file default that needs nothing.

Exporters are chosen by OpenTelemetry's own variables: ``OTEL_TRACES_EXPORTER`` and
``OTEL_METRICS_EXPORTER`` (``otlp`` for OTLP over HTTP to a collector or Jaeger,
configured by ``OTEL_EXPORTER_OTLP_*``; ``console``; ``none``) plus Baton's ``jsonl``,
the embedded default: spans to ``$BATON_HOME/traces.jsonl``, metrics to
``$BATON_HOME/metrics.jsonl``. ``OTEL_SERVICE_NAME`` names the service.

Prompt and reply content never go into spans (``BATON_TRACE_CONTENT=1`` would be the
switch; it is not implemented, so content stays out).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from baton.messages import AuditEvent, AuditKind

_configured = False
_lock = threading.Lock()


class JsonlSpanExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (the embedded default)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(s), sort_keys=True) for s in spans]
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release."""


class JsonlMetricExporter(MetricExporter):
    """Appends each metrics collection as one JSON line."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(metrics_data.to_json(indent=None) + "\n")
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release."""


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as a flat JSON-ready dict."""
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


def configure(home: Path, *, service: str = "baton") -> None:
    """Install the global tracer and meter providers once per process, from ``OTEL_*``."""
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    tracer_provider = TracerProvider(resource=resource)
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "jsonl").split(",")[0].strip()
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Batch processors everywhere: workflow spans end inside the workflow sandbox, where
    # an exporter must not do I/O; a batch processor exports from its own thread.
    elif kind == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif kind == "jsonl":
        tracer_provider.add_span_processor(BatchSpanProcessor(JsonlSpanExporter(home / "traces.jsonl")))
    trace.set_tracer_provider(tracer_provider)
    metric_kind = os.environ.get("OTEL_METRICS_EXPORTER", "jsonl").split(",")[0].strip()
    exporter: MetricExporter | None = None
    if metric_kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter()
    elif metric_kind == "console":
        exporter = ConsoleMetricExporter()
    elif metric_kind == "jsonl":
        exporter = JsonlMetricExporter(home / "metrics.jsonl")
    readers = [PeriodicExportingMetricReader(exporter, export_interval_millis=15_000)] if exporter else []
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def shutdown() -> None:
    """Flush and stop the global providers (on worker exit); later calls do nothing."""
    global _configured
    with _lock:
        if not _configured:
            return
        _configured = False
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if isinstance(meter_provider, MeterProvider):
        meter_provider.shutdown()


@functools.lru_cache(maxsize=1)
def _instruments(provider: object) -> dict[str, Any]:
    """Baton's instruments, made once per meter provider (not on every append)."""
    meter = metrics.get_meter("baton")
    return {
        "cases": meter.create_counter("baton.cases", description="Cases closed, by outcome"),
        "failures": meter.create_counter("baton.handoff.check_failures", description="Failed handoff checks"),
        "revisions": meter.create_counter("baton.revisions", description="Drafts sent back for revision"),
        "escalations": meter.create_counter("baton.escalations", description="Escalations to people"),
        "latency": meter.create_histogram("baton.approval.latency", unit="s", description="Ask to decision"),
        "tokens": meter.create_counter("baton.llm.tokens", unit="{token}", description="LLM tokens"),
    }


def record_metrics(process: str, events: Sequence[AuditEvent]) -> None:
    """Count newly logged audit events as Baton metrics (each event once, outside replay)."""
    i = _instruments(metrics.get_meter_provider())
    asked: dict[str, Any] = {}
    for event in events:
        base = {"baton.process": process}
        if event.kind == AuditKind.CASE_CLOSED:
            i["cases"].add(1, {**base, "baton.outcome": str(event.data.get("outcome"))})
        elif event.kind == AuditKind.CHECK_FAILED:
            i["failures"].add(1, {**base, "baton.agent": event.agent or ""})
        elif event.kind == AuditKind.REVISION:
            i["revisions"].add(1, base)
        elif event.kind == AuditKind.ESCALATED:
            i["escalations"].add(1, base)
        elif event.kind == AuditKind.APPROVAL_REQUESTED:
            asked[str(event.data.get("role"))] = event.at
        elif event.kind in (AuditKind.APPROVED, AuditKind.REJECTED, AuditKind.CHANGES_REQUESTED):
            started = asked.get(str(event.data.get("role")))
            if started is not None:
                i["latency"].record((event.at - started).total_seconds(), base)
        if "input_tokens" in event.data:  # a handoff, or a reply that never met its contract
            agent = {**base, "gen_ai.agent.name": event.agent or ""}
            i["tokens"].add(int(event.data["input_tokens"]), {**agent, "gen_ai.token.type": "input"})
            i["tokens"].add(int(event.data["output_tokens"]), {**agent, "gen_ai.token.type": "output"})
