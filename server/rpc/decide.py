"""The request path: request -> facts -> aggregates -> evaluation -> decision.

Shared by Evaluate, EvaluateBatch and EvaluateStream so the three can never disagree, and
deciding through :class:`dsl.pipeline.Step` as replay, eval and rule tests do: this module
adds only what the wire needs (validation, tenants and credentials, limits, the receipt
clock, idempotency claims, the tenant's fail mode).
Everything here runs on the event loop and must stay cheap: phone facts come from a cache,
the policy is compiled, and the state backend is one round trip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import grpc

from dsl.aggregates import RefLike
from dsl.decision import RuleTrace
from dsl.durations import format_duration
from dsl.facts import NO_IP, EventFacts, Facts
from dsl.pipeline import STATE_UNAVAILABLE, Decided, Step
from dsl.runtime import INT_MAX, INT_MIN, EvaluationDeadline, past, work_time
from server.api import decision_pb2 as pb
from server.bundle.registry import TenantRegistry
from server.bundle.tenant_config import TenantConfig
from server.geo.ipdb import IpLocator
from server.observability.telemetry import Telemetry
from server.outcome import Outcome
from server.phone import PhoneParseError, PhoneParser, mask
from server.rpc.auth import authorize_tenant
from server.rpc.errors import RequestError, invalid
from server.rpc.limits import Limiter
from server.rpc.validation import validate_request
from server.state import Claim, StateError
from server.state.backend import StateBackend, fingerprint
from server.state.memory import MemoryBackend
from server.state.pool import BackendPool

log = logging.getLogger("ringfence.decide")

# Events stamped further ahead than this are treated as "now": a caller's clock must not
# be able to write into future buckets.
MAX_FUTURE_SKEW_S = 60.0
_EMPTY_ATTRS: Mapping[str, str] = MappingProxyType({})


class Decider:
    def __init__(
        self,
        registry: TenantRegistry,
        parser: PhoneParser,
        backends: BackendPool,
        telemetry: Telemetry,
        *,
        clock: Callable[[], float] = time.time,
        idempotency_window_s: float = 600.0,
        max_event_lateness_s: float = 86_400.0,
        evaluation_deadline_s: float = 0.0,
        ip_locator: IpLocator | None = None,
    ) -> None:
        self.registry = registry
        self.ip_locator = ip_locator if ip_locator is not None else IpLocator()
        self.parser = parser
        self.backends = backends
        self.telemetry = telemetry
        self.clock = clock
        self.limiter = Limiter()
        self.idempotency_window_s = idempotency_window_s
        self.max_event_lateness_s = max_event_lateness_s
        # How long one request may hold the event loop (0: no deadline). What it spends
        # waiting for a state backend over the network does not count: only its own work.
        self.evaluation_deadline_s = evaluation_deadline_s
        # Fingerprints are keyed like every stored hash: they are derived from the number.
        self._fingerprint_key = hashlib.blake2b(
            telemetry.hasher.key, digest_size=32, person=b"rf-fp"
        ).digest()
        # Generated request ids: a random per-process prefix and a counter, unique without
        # a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    async def evaluate(
        self,
        req: pb.EvaluateRequest,
        token: str | None,
        *,
        field_prefix: str = "",
        out: pb.EvaluateResponse | None = None,
    ) -> pb.EvaluateResponse:
        started = time.perf_counter()
        try:
            outcome = await self._decide(req, token, field_prefix, started)
        except RequestError as exc:
            self.telemetry.request_failed(
                req.tenant, exc.code, known=req.tenant in self.registry.slots
            )
            raise
        self.telemetry.decided(outcome)
        if log.isEnabledFor(logging.DEBUG):
            d = outcome.decision
            log.debug(
                "decided",
                extra={
                    "tenant": outcome.bundle.name,
                    "request_id": outcome.request_id,
                    "phone": mask(outcome.facts.phone.e164),
                    "action": d.action.name.lower(),
                    "rules": [m.rule for m in d.matches],
                    "degraded": outcome.degraded,
                },
            )
        return to_response(outcome, req.explain, out)

    async def _decide(
        self, req: pb.EvaluateRequest, token: str | None, prefix: str, started: float
    ) -> Outcome:
        # The deadline counts this request's own CPU on the event loop's thread: not time
        # the OS gave to other processes, nor other calls' work while this one waits.
        cpu_start = work_time()
        validate_request(req, prefix)
        bundle = self.registry.get(req.tenant)
        if bundle is None:
            if req.tenant in self.registry.slots:
                # The folder exists but no version of its policy ever compiled.
                raise RequestError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"tenant {req.tenant!r} has no good policy loaded (see GetPolicyStatus)",
                )
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"unknown tenant {req.tenant!r}")
        authorize_tenant(bundle.config, token, self._all_configs)
        if not self.limiter.allow(bundle.name, bundle.config.max_rps):
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {bundle.name!r} is over its limit of {bundle.config.max_rps} requests/s",
            )
        tel = self.telemetry
        with tel.stage("facts"):
            try:
                phone = self.parser.parse(
                    req.phone_number, req.default_region.upper() or bundle.config.default_region
                )
            except PhoneParseError as exc:
                raise invalid(f"{prefix}{exc.field}", exc.reason) from None
            received = self.clock()
            event = self._event(req, received, prefix)
            # The IP databases are asked only by a policy that reads ip.* facts.
            ip = self.ip_locator.facts(event.ip) if bundle.policy.reads_ip else NO_IP
            facts = Facts(tenant=bundle.name, phone=phone, event=event, ip=ip)
        step = Step(bundle.policy, bundle.lists, facts)
        values: Mapping[str, int | None] = {}
        degraded = replayed = False
        decided_facts: Facts | None = None
        limit = self.evaluation_deadline_s
        others = 0.0  # CPU the thread spent on other calls while this one waited
        if step.refs:
            now = facts.event.occurred_at
            with tel.stage("aggregates"):
                asked = work_time()
                # The memory backend answers without waiting: its reads are this
                # request's own work, and count against the deadline.
                in_process = True
                try:
                    # Picking can fail too (a name the tenant was not offered): that is
                    # the backend failing, and the tenant's fail_mode decides.
                    backend = self.backends.backend_for(bundle.name, bundle.config.state)
                    in_process = isinstance(backend, MemoryBackend)
                    if req.request_id and not req.dry_run and self.idempotency_window_s > 0:
                        claim = Claim(
                            req.request_id,
                            fingerprint(facts, stamp=_stamp(req), key=self._fingerprint_key),
                            self.idempotency_window_s,
                        )
                        applied = await backend.apply_claimed(
                            bundle.name, step.refs, now, claim, received=received
                        )
                        values = applied.values
                        if applied.replayed:
                            replayed = True
                            if applied.now != now:
                                # The first attempt's event time: rules reading the time
                                # (local hour, occurred_at) decide as they did then.
                                event = dataclasses.replace(facts.event, occurred_at=applied.now)
                                decided_facts = dataclasses.replace(facts, event=event)
                    else:
                        values = await backend.apply(
                            bundle.name,
                            step.refs,
                            now,
                            record=not req.dry_run,
                            received=received,
                        )
                except StateError as exc:
                    tel.backend_failed(bundle.name, exc)
                    if bundle.config.fail_mode == "closed":
                        raise RequestError(
                            grpc.StatusCode.UNAVAILABLE,
                            "state backend unavailable and the tenant fails closed",
                        ) from None
                    degraded = True
                if not in_process:
                    others = work_time() - asked
        deadline = cpu_start + others + limit if limit > 0 else 0.0
        try:
            with tel.stage("evaluate"):
                # The work before evaluating (facts, planning, an in-process state's reads)
                # may already have used the deadline up.
                past(deadline)
                decided = step.finish(
                    values,
                    explain=req.explain,
                    facts=decided_facts,
                    unknown_because=STATE_UNAVAILABLE if degraded else "",
                    deadline=deadline,
                )
        except EvaluationDeadline:
            tel.over_deadline(bundle.name, "evaluation")
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"evaluating tenant {bundle.name!r} took longer than the deadline of"
                f" {limit * 1000:g} ms (--evaluation-deadline-ms): the policy costs too much"
                " or the server is overloaded",
            ) from None
        if step.refs and not (req.dry_run or degraded or replayed):
            after = step.decided_refs(decided)
            if after:
                await self._record_decision(bundle.name, backend, after, decided, received)
        return Outcome(
            bundle=bundle,
            facts=decided.facts,
            decision=decided.decision,
            values=values,
            degraded=degraded,
            request_id=req.request_id or f"{self._id_prefix}-{next(self._ids):x}",
            dry_run=req.dry_run,
            started=started,
            replayed=replayed,
        )

    async def _record_decision(
        self,
        tenant: str,
        backend: StateBackend,
        refs: Sequence[RefLike],
        decided: Decided,
        received: float,
    ) -> None:
        """Feed the aggregates over past decisions with this one: a second call to the
        state, made only for a policy that declares such an aggregate (docs/state.md §11).
        The decision stands if it fails: the failure is counted like any other, and the
        decision is not counted."""
        with self.telemetry.stage("record decision"):
            try:
                await backend.apply(
                    tenant, refs, decided.facts.event.occurred_at, record=True, received=received
                )
            except StateError as exc:
                self.telemetry.backend_failed(tenant, exc)

    def _event(self, req: pb.EvaluateRequest, received: float, prefix: str) -> EventFacts:
        """The event as decided: its time bounded as docs/state.md §1 states."""
        if not req.HasField("event"):
            return EventFacts(occurred_at=received)
        ev = req.event
        at = received
        stamped = _stamp(req)
        if stamped is not None:
            if stamped < received - self.max_event_lateness_s:
                raise invalid(
                    f"{prefix}event.occurred_at",
                    f"{format_duration(int(received - stamped))} before the server's clock;"
                    f" events may be at most {format_duration(int(self.max_event_lateness_s))}"
                    " late (--max-event-lateness): replay older ones with `ringfence replay`",
                )
            # A caller's clock running ahead must not write into future buckets.
            at = stamped if stamped <= received + MAX_FUTURE_SKEW_S else received
        return EventFacts(
            scene=ev.scene,
            app_id=ev.app_id,
            ip=ev.ip,
            device_id=ev.device_id,
            occurred_at=at,
            attributes=MappingProxyType(dict(ev.attributes)) if ev.attributes else _EMPTY_ATTRS,
        )

    def _all_configs(self) -> list[TenantConfig]:
        return [s.bundle.config for s in self.registry.slots.values() if s.bundle is not None]


def _stamp(req: pb.EvaluateRequest) -> float | None:
    """The event time as the caller sent it, or None."""
    if req.HasField("event") and req.event.HasField("occurred_at"):
        return req.event.occurred_at.seconds + req.event.occurred_at.nanos / 1e9
    return None


def to_response(
    outcome: Outcome, explain: bool = False, out: pb.EvaluateResponse | None = None
) -> pb.EvaluateResponse:
    """The wire form of a decision, built into ``out`` when given (a batch result's slot:
    filling it in place saves a copy per item)."""
    d = outcome.decision
    p = outcome.facts.phone
    resp = pb.EvaluateResponse() if out is None else out
    resp.action = int(d.action)  # type: ignore[assignment]
    resp.risk_level = d.risk_level
    if d.tags:
        resp.tags.extend(d.tags)
    resp.policy_version = outcome.bundle.version
    phone = resp.phone
    phone.e164 = p.e164
    phone.valid = p.valid
    phone.region = p.region
    phone.number_type = p.number_type
    phone.carrier = p.carrier
    phone.segment_kind = p.segment_kind
    if p.province:
        phone.province = p.province
        phone.city = p.city
    ip = outcome.facts.ip
    if ip is not NO_IP:
        info = resp.ip
        info.version = ip.version
        info.country = ip.country
        info.province = ip.province
        info.city = ip.city
        info.asn = ip.asn
        info.org = ip.org
    resp.degraded = outcome.degraded
    resp.request_id = outcome.request_id
    if outcome.replayed:
        resp.replayed = True
    if d.matches:
        add = resp.matches.add
        for m in d.matches:
            add(
                rule=m.rule,
                action=int(m.action),
                reason=m.reason,
                shadow=m.shadow,
                risk_level=m.risk_level,
                tags=m.tags,
                priority=m.priority,
                score=m.score,
            )
    if d.score:
        resp.score = d.score
    if d.failed_rules:
        resp.failed_rules.extend(d.failed_rules)
    if explain:
        resp.decided_by = d.decided_by
    if explain and outcome.values_read:
        add_value = resp.aggregates.add
        for agg_id, value in outcome.values_read:
            # A value past int64 (only a broken backend answers one) is no value at all.
            if value is None or not INT_MIN <= value <= INT_MAX:
                add_value(id=agg_id, known=False)
            else:
                add_value(id=agg_id, value=value, known=True)
    if explain and d.trace:
        add_line = resp.explanation.add
        for tr in d.trace:
            add_line(
                rule=tr.rule,
                value=_trace_value(tr),
                matched=tr.matched,
                detail=tr.detail,
            )
    return resp


def _trace_value(tr: RuleTrace) -> str:
    if tr.error:
        return "error"
    return "unknown" if tr.value is None else ("true" if tr.value else "false")
