"""The request path: request -> facts -> aggregates -> evaluation -> decision.

Shared by Evaluate, EvaluateBatch and EvaluateStream so the three can never disagree.
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
from collections.abc import Callable, Mapping
from types import MappingProxyType

import grpc

from dsl.decision import RuleTrace
from dsl.facts import EventFacts, Facts, PhoneFacts
from server.api import decision_pb2 as pb
from server.bundle.registry import TenantRegistry
from server.bundle.tenant_config import TenantConfig
from server.observability.telemetry import Telemetry
from server.outcome import Outcome
from server.phone import PhoneParseError, PhoneParser, mask
from server.rpc.auth import authorize_tenant
from server.rpc.errors import RequestError, invalid
from server.rpc.limits import Limiter
from server.rpc.validation import validate_request
from server.state import Claim, StateError
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
    ) -> None:
        self.registry = registry
        self.parser = parser
        self.backends = backends
        self.telemetry = telemetry
        self.clock = clock
        self.limiter = Limiter()
        self.idempotency_window_s = idempotency_window_s
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
            facts, now = self._facts(req, bundle.name, phone)
        policy = bundle.policy
        refs = policy.plan(facts, bundle.lists)
        values: Mapping[str, int | None] = {}
        degraded = replayed = False
        if refs:
            with tel.stage("aggregates"):
                try:
                    # Picking can fail too (a name the tenant was not offered): that is
                    # the backend failing, and the tenant's fail_mode decides.
                    backend = self.backends.backend_for(bundle.name, bundle.config.state)
                    if req.request_id and not req.dry_run and self.idempotency_window_s > 0:
                        claim = Claim(
                            req.request_id, self._fingerprint(req, facts), self.idempotency_window_s
                        )
                        applied = await backend.apply_claimed(bundle.name, refs, now, claim)
                        values = applied.values
                        if applied.replayed:
                            replayed = True
                            if applied.now != now:
                                # The first attempt's event time: rules reading the time
                                # (local hour, occurred_at) decide as they did then.
                                event = dataclasses.replace(facts.event, occurred_at=applied.now)
                                facts = dataclasses.replace(facts, event=event)
                    else:
                        values = await backend.apply(bundle.name, refs, now, record=not req.dry_run)
                except StateError as exc:
                    tel.backend_failed(bundle.name, exc)
                    if bundle.config.fail_mode == "closed":
                        raise RequestError(
                            grpc.StatusCode.UNAVAILABLE,
                            "state backend unavailable and the tenant fails closed",
                        ) from None
                    degraded = True
        with tel.stage("evaluate"):
            decision = policy.evaluate(facts, values, bundle.lists, explain=req.explain)
        return Outcome(
            bundle=bundle,
            facts=facts,
            decision=decision,
            values=values,
            degraded=degraded,
            request_id=req.request_id or f"{self._id_prefix}-{next(self._ids):x}",
            dry_run=req.dry_run,
            started=started,
            replayed=replayed,
        )

    def _fingerprint(self, req: pb.EvaluateRequest, facts: Facts) -> str:
        """What the request asks, so that an id reused for another request is no retry:
        the number as parsed and the event as sent (its time only when the caller set it,
        since an unset time is each attempt's own clock)."""
        ev = facts.event
        stamp = req.event.occurred_at
        parts = [
            facts.phone.e164,
            ev.scene,
            ev.app_id,
            ev.ip,
            ev.device_id,
            f"{stamp.seconds}.{stamp.nanos}" if req.event.HasField("occurred_at") else "",
        ]
        for k in sorted(ev.attributes):
            parts += (k, ev.attributes[k])
        text = "\0".join(parts).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, key=self._fingerprint_key, digest_size=12).hexdigest()

    def _facts(
        self, req: pb.EvaluateRequest, tenant: str, phone: PhoneFacts
    ) -> tuple[Facts, float]:
        now = self.clock()
        if req.HasField("event"):
            ev = req.event
            at = now
            if ev.HasField("occurred_at"):
                stamped = ev.occurred_at.seconds + ev.occurred_at.nanos / 1e9
                at = stamped if stamped <= now + MAX_FUTURE_SKEW_S else now
            event = EventFacts(
                scene=ev.scene,
                app_id=ev.app_id,
                ip=ev.ip,
                device_id=ev.device_id,
                occurred_at=at,
                attributes=MappingProxyType(dict(ev.attributes)) if ev.attributes else _EMPTY_ATTRS,
            )
        else:
            at = now
            event = EventFacts(occurred_at=now)
        return Facts(tenant=tenant, phone=phone, event=event), at

    def _all_configs(self) -> list[TenantConfig]:
        return [s.bundle.config for s in self.registry.slots.values() if s.bundle is not None]


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
