"""Traces, metrics and the decision log, behind one object the request path calls.

Tracing is off unless configured (standard ``OTEL_*`` variables, or a provider passed in by
tests); when off, :meth:`Telemetry.stage` is a shared no-op context manager so the request
path pays nothing. Attributes carry the tenant, action, policy version and rule names, and
the number only as a keyed hash.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from server.observability.decision_log import DecisionLog
from server.observability.latency import LatencyHistogram
from server.phone.hashing import NumberHasher

if TYPE_CHECKING:
    from server.bundle.registry import ReloadOutcome
    from server.outcome import Outcome

log = logging.getLogger("ringfence.telemetry")
_NOOP = contextlib.nullcontext()
# Rule names are a tenant author's text: each tenant labels at most this many rules in the
# rule metrics, and the rest are counted together, so one tenant's thousands of rules (or
# renames on every reload) cannot fill a metric's series limit and push other tenants'
# rules into its overflow.
RULE_LABELS = 200
OTHER_RULES = "_other"


def _rule_label(labels: dict[str, str], rule: str) -> str:
    label = rule if len(labels) < RULE_LABELS else OTHER_RULES
    if len(labels) < 4 * RULE_LABELS:  # remembered, up to a bound, so the next hit is a get
        labels[rule] = label
    return label


# The tenant label of errors for tenants the server does not have: a caller's text never
# becomes a label value, so it cannot fill the series cap or crowd out real tenants.
UNKNOWN_TENANT = "_unknown"
DEFAULT_SAMPLE_RATIO = 0.1  # of traces the caller has not already decided on
# When the request (or batch item) being answered arrived: set by the servicer, read when
# the request fails, so an error's latency is counted like a decision's. Per task, so
# interleaved requests on the event loop never see each other's.
_REQUEST_START: contextvars.ContextVar[float] = contextvars.ContextVar("ringfence_request_start")

Observe = Callable[[], "list[tuple[float, dict[str, str]]]"]


def tracing_from_env() -> TracerProvider | None:
    """A provider exporting over OTLP when the standard variables ask for it, else None."""
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if exporter_name in ("", "none") and not endpoint:
        return None
    if exporter_name in ("none",):
        return None
    exporter: SpanExporter
    if exporter_name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    # Without OTEL_TRACES_SAMPLER the SDK would trace every request, which costs this server
    # ~45 % of its throughput and the SDK's floor alone (one span per call, exported) ~20 %
    # (docs/benchmarks.md); a head sample of 10 % costs <= 15 %. The caller's sampling
    # decision is followed either way; OTEL_TRACES_SAMPLER / _ARG override the default.
    sampler = None
    if not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = ParentBasedTraceIdRatio(DEFAULT_SAMPLE_RATIO)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "ringfence"}), sampler=sampler
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Telemetry:
    def __init__(
        self,
        hasher: NumberHasher,
        *,
        tracer_provider: TracerProvider | None = None,
        metric_readers: list[MetricReader] | None = None,
        decision_log: DecisionLog | None = None,
        gauges: dict[str, Callable[[], float]] | None = None,
    ) -> None:
        self.hasher = hasher
        self.tracer_provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("ringfence") if tracer_provider else None
        self.decision_log = decision_log
        self.meter_provider = MeterProvider(
            metric_readers=metric_readers or [],
            resource=Resource.create({"service.name": "ringfence"}),
        )
        m = self.meter_provider.get_meter("ringfence")
        # The per-decision counters are plain dict increments read at collection time:
        # an SDK counter ``add`` with attributes costs microseconds on every request.
        self._decision_counts: Counter[tuple[str, str]] = Counter()
        self._rule_counts: Counter[tuple[str, str, bool]] = Counter()
        self._degraded_counts: Counter[str] = Counter()
        self._rule_error_counts: Counter[tuple[str, str]] = Counter()
        # tenant -> rule name -> its label: the first RULE_LABELS names a tenant's rules hit
        # keep theirs, later ones share OTHER_RULES (see _rule_label).
        self._rule_labels: dict[str, dict[str, str]] = {}
        m.create_observable_counter(
            "ringfence_decisions",
            callbacks=[self._observe(self._decision_counts, ("tenant", "action"))],
            description="Decisions by tenant and action",
        )
        m.create_observable_counter(
            "ringfence_rule_hits",
            callbacks=[self._observe(self._rule_counts, ("tenant", "rule", "shadow"))],
            description="Rules that matched, by tenant, rule and shadow",
        )
        m.create_observable_counter(
            "ringfence_rule_errors",
            callbacks=[self._observe(self._rule_error_counts, ("tenant", "rule"))],
            description="Rules that raised while evaluated (their on_error decided), by rule",
        )
        m.create_observable_counter(
            "ringfence_degraded_decisions",
            callbacks=[self._observe(self._degraded_counts, ("tenant",))],
            description="Decisions made without the state backend (fail open)",
        )
        self.latency = LatencyHistogram()
        self._errors = m.create_counter(
            "ringfence_request_errors", description="Requests answered with an error, by code"
        )
        self._backend_errors = m.create_counter(
            "ringfence_backend_errors", description="State backend failures by kind"
        )
        self._reloads = m.create_counter(
            "ringfence_policy_reloads",
            description="Policy reloads that changed something, by tenant and result "
            "(ok: a new version; error: a new or different error; removed)",
        )
        self._log_drops = m.create_counter(
            "ringfence_decision_log_dropped",
            description="Decision-log lines dropped because the queue was full",
        )
        for name, fn in (gauges or {}).items():
            self.add_gauge(name, fn)

    @staticmethod
    def _observe(
        counts: Counter[Any], names: tuple[str, ...]
    ) -> Callable[[Any], list[metrics.Observation]]:
        def callback(_options: Any) -> list[metrics.Observation]:
            out = []
            for key, value in list(counts.items()):
                values = key if isinstance(key, tuple) else (key,)
                attrs = {
                    n: (str(v).lower() if isinstance(v, bool) else v)
                    for n, v in zip(names, values, strict=True)
                }
                out.append(metrics.Observation(value, attrs))
            return out

        return callback

    def add_gauge(self, name: str, fn: Callable[[], float], description: str = "") -> None:
        self.add_observable(name, lambda: [(fn(), {})], description, counter=False)

    def add_counter(self, name: str, fn: Callable[[], float], description: str) -> None:
        """A cumulative count read at scrape time: exported as ``<name>_total``, typed
        counter, so ``rate()`` and ``increase()`` handle process restarts."""
        self.add_observable(name, lambda: [(fn(), {})], description, counter=True)

    def add_observable(self, name: str, fn: Observe, description: str, *, counter: bool) -> None:
        """A gauge or counter with labels: ``fn`` returns (value, labels) pairs."""

        def callback(_options: Any) -> list[metrics.Observation]:
            try:
                return [metrics.Observation(v, attrs) for v, attrs in fn()]
            except Exception:  # a metric must never break a scrape
                return []

        meter = self.meter_provider.get_meter("ringfence")
        create = meter.create_observable_counter if counter else meter.create_observable_gauge
        create(name, callbacks=[callback], description=description)

    # --- request path -------------------------------------------------------------

    def stage(self, name: str) -> contextlib.AbstractContextManager[Any]:
        # A request whose server span was not sampled gets no child spans either.
        if self.tracer is None or not trace.get_current_span().is_recording():
            return _NOOP
        return self.tracer.start_as_current_span(name)

    def decided(self, outcome: Outcome) -> None:
        d = outcome.decision
        tenant = outcome.bundle.name
        action = d.action.name.lower()
        elapsed = time.perf_counter() - outcome.started
        self._decision_counts[(tenant, action)] += 1
        self.latency.observe(tenant, elapsed, "OK")
        if d.matches:
            labels = self._rule_labels.get(tenant)
            if labels is None:
                labels = self._rule_labels[tenant] = {}
            for match in d.matches:
                rule = labels.get(match.rule) or _rule_label(labels, match.rule)
                self._rule_counts[(tenant, rule, match.shadow)] += 1
        if d.failed_rules:
            labels = self._rule_labels.setdefault(tenant, {})
            for rule in d.failed_rules:
                self._rule_error_counts[
                    (tenant, labels.get(rule) or _rule_label(labels, rule))
                ] += 1
        if outcome.degraded:
            self._degraded_counts[tenant] += 1
        if self.tracer is not None:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attributes(
                    {
                        "ringfence.tenant": tenant,
                        "ringfence.action": action,
                        "ringfence.policy_version": outcome.bundle.version,
                        "ringfence.rules": [m.rule for m in d.matches],
                        "ringfence.phone_hash": self.hasher(outcome.facts.phone.e164),
                        "ringfence.degraded": outcome.degraded,
                    }
                )
        if self.decision_log is not None and not self.decision_log.offer(outcome, self.hasher):
            self._log_drops.add(1)

    @staticmethod
    def request_started() -> None:
        """Mark when the request about to be answered arrived (per task)."""
        _REQUEST_START.set(time.perf_counter())

    def request_failed(self, tenant: str, code: grpc.StatusCode, *, known: bool) -> None:
        """``known``: the server has this tenant; any other name is counted as
        :data:`UNKNOWN_TENANT`. Counted in the latency histogram too, under its code."""
        label = tenant if known else UNKNOWN_TENANT
        self._errors.add(1, {"tenant": label, "code": code.name})
        started = _REQUEST_START.get(None)
        if started is not None:
            self.latency.observe(label, time.perf_counter() - started, code.name)

    def backend_failed(self, tenant: str, exc: Exception) -> None:
        self._backend_errors.add(1, {"tenant": tenant, "kind": type(exc).__name__})
        log.warning("state backend failed", extra={"tenant": tenant, "error": str(exc)})

    def reloaded(self, outcome: ReloadOutcome) -> None:
        if not outcome.changed:
            # A reload that found the tenant as it was (SIGHUP, a touched file, a bundle
            # poll): nothing happened to count or to report.
            log.debug("policy unchanged", extra={"tenant": outcome.tenant})
            return
        result = "removed" if outcome.removed else ("ok" if outcome.ok else "error")
        self._reloads.add(1, {"tenant": outcome.tenant, "result": result})
        if outcome.ok:
            log.info(
                "policy loaded" if not outcome.removed else "tenant removed",
                extra={"tenant": outcome.tenant, "version": outcome.version},
            )
        else:
            log.error(
                "policy reload failed; keeping the last good policy",
                extra={"tenant": outcome.tenant, "diagnostics": outcome.error},
            )

    @contextlib.contextmanager
    def span(self, name: str, **attributes: str) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        with self.tracer.start_as_current_span(name, attributes=attributes):
            yield

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.meter_provider.shutdown()
        if self.tracer_provider is not None:
            with contextlib.suppress(Exception):
                self.tracer_provider.shutdown()
