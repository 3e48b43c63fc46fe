"""Assembling and running the gRPC server: services, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider

from server.api import decision_pb2, policy_pb2
from server.bundle.registry import ReloadOutcome, TenantRegistry
from server.bundle.reload import Reloader
from server.bundle.remote import BundleSource, RemoteSettings, register_metrics
from server.bundle.worker import CompilePool
from server.config import BundleConfig, ServeConfig
from server.lists.pool import ListPool
from server.lists.writable import StateListMirror
from server.observability.decision_log import DecisionLog
from server.observability.health_http import HealthEndpoint
from server.observability.telemetry import Telemetry, tracing_from_env
from server.observability.tracing import TracingInterceptor
from server.phone import PhoneParser, SegmentTable
from server.phone.hashing import NumberHasher
from server.rpc.decide import Decider
from server.rpc.decision_service import DecisionService
from server.rpc.decoding import add_service
from server.rpc.list_entries import ListEntries
from server.rpc.policy_service import PolicyService
from server.rpc.tls import ReloadingCertificates
from server.shutdown import Health, drain
from server.state import StateBackend, open_backend
from server.state.keys import KeyHasher
from server.state.pool import BackendPool

log = logging.getLogger("ringfence.server")

DECISION_SERVICE = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name
POLICY_SERVICE = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
HEALTH_NAMES = ("", DECISION_SERVICE, POLICY_SERVICE)
MAX_MESSAGE = 4 * 1024 * 1024


def _server_options(config: ServeConfig) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.so_reuseport", 0),
        # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: one connection cannot hold every slot.
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
    ]
    if config.max_connection_age_s > 0:
        # GOAWAY after this age: clients reconnect and their balancer (or the Service's
        # kube-proxy) can pick a new pod, so scale-out reaches existing callers.
        options += [
            ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_s * 1000)),
        ]
    return options


def _reflection_v1_handler(servicer: Any) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    # grpcurl and newer clients ask grpc.reflection.v1 first; its messages are the v1alpha
    # ones under another package name, byte for byte, so the v1alpha servicer answers both.
    return grpc.method_handlers_generic_handler(
        "grpc.reflection.v1.ServerReflection",
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )


@dataclass
class RingfenceServer:
    """One server process. ``start`` binds and loads tenants; ``stop`` drains and closes."""

    config: ServeConfig
    tracer_provider: TracerProvider | None = None
    metric_readers: list[MetricReader] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    backend: StateBackend | None = None
    # Extra grpc.aio server interceptors, outermost first (tests inject faults with them).
    interceptors: list[Any] = field(default_factory=list)

    port: int = 0
    hasher: NumberHasher = field(init=False)
    registry: TenantRegistry = field(init=False)
    compiler: CompilePool = field(init=False)
    list_pool: ListPool = field(init=False)
    reloader: Reloader | None = field(init=False, default=None)
    health: Health = field(init=False)
    decisions: DecisionService = field(init=False)
    telemetry: Telemetry = field(init=False)
    decision_log: DecisionLog | None = field(init=False, default=None)
    _server: grpc.aio.Server | None = field(init=False, default=None)
    backends: BackendPool | None = field(init=False, default=None)
    _metrics_http: Any = field(init=False, default=None)
    _metrics_registry: Any = field(init=False, default=None)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    _stopping: bool = field(init=False, default=False)
    # Set by a second SIGTERM: stop waiting for clients to leave.
    drain_interrupted: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    certificates: ReloadingCertificates | None = field(init=False, default=None)
    bundle_source: BundleSource | None = field(init=False, default=None)
    health_http: HealthEndpoint | None = field(init=False, default=None)
    state_lists: StateListMirror = field(init=False)
    _parser: PhoneParser = field(init=False)
    health_port: int = field(init=False, default=0)

    async def start(self) -> int:
        cfg = self.config
        self.hasher = NumberHasher(cfg.hash_key or None)
        parser = PhoneParser(SegmentTable.load(cfg.segments))
        rules = cfg.rules
        if cfg.bundle is not None:
            self.bundle_source = _bundle_source(cfg.bundle, self._activate_bundle)
            rules = self.bundle_source.prepare()  # empty until the first bundle arrives
        # Policies are compiled in worker processes with a budget; this process only
        # loads what they hand back (server/bundle/worker.py).
        self.compiler = CompilePool(cfg.compile_budget)
        # Big lists are parsed in a child process: a reload never holds the event loop.
        self.list_pool = ListPool(cfg.segments, threshold=cfg.list_child_min_bytes)
        self.registry = TenantRegistry(
            rules,
            parser,
            compiler=self.compiler,
            build_threads=cfg.compile_budget.workers,
            # A tenant.toml naming a backend the operator did not offer it never loads.
            admit=cfg.state_backends.admission_error,
            lists=self.list_pool,
        )
        readers = list(self.metric_readers)
        if cfg.metrics_listen:
            readers.append(self._start_metrics_endpoint(cfg.metrics_listen))
        if cfg.decision_log:
            self.decision_log = DecisionLog(cfg.decision_log)
            self.decision_log.start()
        self.telemetry = Telemetry(
            self.hasher,
            tracer_provider=self.tracer_provider or tracing_from_env(),
            metric_readers=readers,
            decision_log=self.decision_log,
        )
        self.registry.listeners.append(self.telemetry.reloaded)
        if self._metrics_registry is not None:
            self._metrics_registry.register(self.telemetry.latency)

        def factory(url: str) -> StateBackend:
            return open_backend(
                url, hash_key=self.hasher.key, timeout_s=cfg.state_timeout_ms / 1000
            )

        if self.backend is None:
            self.backend = factory(cfg.state)
        self.backends = BackendPool(self.backend, factory, cfg.state_backends)
        # Lists kept in state: every policy that declares one reads this replica's mirror.
        self.state_lists = StateListMirror(self.backends, KeyHasher(self.hasher.key), self.clock)
        self.registry.state_lists = self.state_lists.view
        self.registry.listeners.append(self._follow_state_lists)
        self._parser = parser
        if self.bundle_source is not None:
            register_metrics(
                self.telemetry.meter_provider.get_meter("ringfence"), self.bundle_source.status
            )
        self._register_gauges(parser)
        decider = Decider(
            self.registry,
            parser,
            self.backends,
            self.telemetry,
            clock=self.clock,
            idempotency_window_s=cfg.idempotency_window_s,
            max_event_lateness_s=cfg.max_event_lateness_s,
        )

        self._server = server = self._grpc_server(decider)
        for name in HEALTH_NAMES:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if cfg.health_listen:
            # First: liveness and startup probes ask it while the policy loads.
            self.health_http = HealthEndpoint(self._serving)
            self.health_port = await self.health_http.start(cfg.health_listen)
        self.reloader = Reloader(
            self.registry, debounce_ms=cfg.reload_debounce_ms, poll_ms=cfg.watch_poll_ms
        )
        # The rules are loaded before the port opens: a restarted server that a balancer
        # connects to at once (an L4 proxy, pick_first over addresses) has its tenants, and
        # answers no caller NOT_FOUND for a tenant that is only not loaded yet.
        await self.reloader.reload_now()
        await self.state_lists.refresh()
        self.state_lists.start()
        await self._update_health()
        creds = None
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            self.certificates = ReloadingCertificates(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            creds = self.certificates.credentials()
        if creds is None:
            self.port = server.add_insecure_port(cfg.listen)
        else:
            self.port = server.add_secure_port(cfg.listen, creds)
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.listen}")
        await server.start()
        log.info(
            "listening", extra={"address": cfg.listen, "port": self.port, "tls": creds is not None}
        )
        if not self.registry.slots and self.bundle_source is None:
            log.warning(
                "no tenant folders in the rules directory: not ready until a policy arrives",
                extra={"rules": str(cfg.rules)},
            )
        for slot in self.registry.slots.values():
            if slot.bundle is not None and slot.bundle.config.open_access:
                log.warning(
                    "tenant has no tokens: anyone who can reach the port may use it",
                    extra={"tenant": slot.name},
                )
        for name in cfg.state_backends.unused():
            log.warning(
                "state backend is offered to no tenant (--state-backend-tenants NAME=TENANT)",
                extra={"backend": name},
            )
        if not cfg.admin_token_hashes:
            log.warning(
                "PolicyService has no admin token: anyone who can reach the port may read "
                "policy status, validate policies and force reloads"
            )
        if self.bundle_source is not None:
            self.bundle_source.start()  # the bundle poller replaces the file watcher
        elif cfg.watch:
            self.reloader.start()
        await self._update_health()
        self.registry.listeners.append(self._schedule_health_update)
        return self.port

    def _follow_state_lists(self, outcome: ReloadOutcome) -> None:
        """After a reload, follow exactly the lists kept in state that live policies declare."""
        self.state_lists.keep_only(
            (slot.bundle.config.state, name, decl.name)
            for name, slot in self.registry.slots.items()
            if slot.bundle is not None
            for decl in slot.bundle.policy.lists
            if decl.from_state
        )

    def _grpc_server(self, decider: Decider) -> grpc.aio.Server:
        """The services, health (NOT_SERVING until a policy loads) and reflection."""
        interceptors: list[Any] = list(self.interceptors)
        if self.telemetry.tracer is not None:
            interceptors.append(TracingInterceptor(self.telemetry.tracer))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=_server_options(self.config),
            # Past this many calls in flight, new ones are refused RESOURCE_EXHAUSTED at
            # once: idle streams cannot pile up without bound.
            maximum_concurrent_rpcs=self.config.max_concurrent_rpcs,
        )
        self.decisions = DecisionService(
            decider,
            stream_idle_timeout_s=self.config.stream_idle_timeout_s,
            ready=self.registry.ready,
        )
        add_service(
            server, decision_pb2.DESCRIPTOR.services_by_name["DecisionService"], self.decisions
        )
        bundle_status = self.bundle_source.status if self.bundle_source is not None else None
        add_service(
            server,
            policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
            PolicyService(
                self.registry,
                self.config.admin_token_hashes,
                self.compiler,
                bundle_status,
                ListEntries(
                    self.registry,
                    self.state_lists,
                    self._parser,
                    self.config.admin_token_hashes,
                    self.clock,
                ),
            ),
        )
        self.health = Health()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            *HEALTH_NAMES[1:],
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection_servicer = reflection.aio.ReflectionServicer(names)  # type: ignore[attr-defined]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection_servicer, server)
        server.add_generic_rpc_handlers((_reflection_v1_handler(reflection_servicer),))
        return server

    def _serving(self) -> bool:
        """What /readyz answers: the same as gRPC health for the DecisionService."""
        return not self._stopping and self.registry.ready()

    async def _activate_bundle(self, directory: Path) -> list[ReloadOutcome]:
        return await self.registry.reload(root=directory)

    def _schedule_health_update(self, _outcome: object) -> None:
        task = asyncio.ensure_future(self._update_health())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _update_health(self) -> None:
        if self._stopping:
            return  # a reload finishing during shutdown must not turn health back on
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.registry.ready()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in HEALTH_NAMES:
            await self.health.set(name, status)

    def _start_metrics_endpoint(self, address: str) -> MetricReader:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        # A registry of our own, so several servers in one process (tests) don't collide.
        self._metrics_registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(registry=self._metrics_registry)
        # process_* (CPU, resident memory, open files, start time) of this process, and the
        # same for the policy compiler processes beside it (a pod's memory is all of them).
        from prometheus_client import PlatformCollector, ProcessCollector

        from server.observability.processes import ChildProcesses

        ProcessCollector(registry=self._metrics_registry)
        PlatformCollector(registry=self._metrics_registry)
        self._metrics_registry.register(ChildProcesses())
        host, _, port = address.rpartition(":")
        self._metrics_http = start_http_server(
            int(port), addr=host.strip("[]"), registry=self._metrics_registry
        )
        return reader

    @property
    def metrics_port(self) -> int:
        if self._metrics_http is None:
            return 0
        return int(self._metrics_http[0].server_address[1])

    def _register_gauges(self, parser: PhoneParser) -> None:
        """Counts kept by the parser, the state backends and the compiler, read at scrape
        time: cumulative ones as counters (``_total``), levels as gauges."""
        tel = self.telemetry
        cache = parser.cache_info
        tel.add_counter(
            "ringfence_phone_cache_hits",
            lambda: cache.hits,
            "Phone numbers answered from the parse cache",
        )
        tel.add_counter(
            "ringfence_phone_cache_misses",
            lambda: cache.misses,
            "Phone numbers parsed (not in the parse cache)",
        )
        pool = self.backends
        assert pool is not None

        def per_backend(attr: str) -> Callable[[], list[tuple[float, dict[str, str]]]]:
            return lambda: [(getattr(b.stats, attr), {"backend": name}) for name, b in pool.named()]

        for attr, counter, description in (
            ("calls", True, "State backend calls (one per decision that needs state)"),
            ("errors", True, "State backend calls that failed (the tenant's fail_mode decided)"),
            ("timeouts", True, "State backend calls that ran past --state-timeout-ms"),
            ("round_trips", True, "Network round trips to the state backend"),
            ("evictions", True, "State keys evicted (memory backend: over its size limit)"),
            ("replays", True, "Retried request ids answered from the idempotency record"),
            ("keys", False, "Live state keys (memory: exact; Redis: DBSIZE at the last ping)"),
        ):
            tel.add_observable(
                f"ringfence_state_{attr}",
                per_backend(attr),
                f"{description}, by backend (default, or the operator's name for it)",
                counter=counter,
            )
        compiles = self.compiler.stats
        for name, fn, description in (
            ("ringfence_policy_compiles", lambda: compiles.jobs, "Policy compile jobs run"),
            (
                "ringfence_policy_compile_timeouts",
                lambda: compiles.timeouts,
                "Policy compiles stopped at their CPU budget",
            ),
            (
                "ringfence_policy_compile_out_of_memory",
                lambda: compiles.out_of_memory,
                "Policy compiles stopped at their memory budget",
            ),
            (
                "ringfence_policy_checks_refused",
                lambda: compiles.refused,
                "ValidatePolicy calls refused because the compile queue was full",
            ),
        ):
            tel.add_counter(name, fn, description)
        # The service is made after the gauges; the gauge reads it when scraped.
        tel.add_gauge(
            "ringfence_streams_open",
            lambda: self.decisions.open_streams,
            "EvaluateStream calls running now",
        )
        if self.decision_log is not None:
            dl = self.decision_log
            tel.add_gauge(
                "ringfence_decision_log_queue",
                lambda: dl.queue.qsize(),
                "Decision-log lines waiting to be written",
            )

    async def reload(self) -> None:
        if self.reloader is not None:
            await self.reloader.reload_now()
        if self.bundle_source is not None:
            self.bundle_source.poll_now()

    async def stop(self, grace: float | None = None) -> None:
        """Turn NOT_SERVING, refuse new connections and wait (up to the drain time) for
        the open ones to end, then stop: in-flight calls get the grace period. The order
        is why no call is dropped: see server/shutdown.py."""
        grace = self.config.grace_s if grace is None else grace
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        if self.reloader is not None:
            await self.reloader.stop()
        if self.bundle_source is not None:
            await self.bundle_source.stop()
        if self._server is not None:
            self.decisions.drain()
            if self.config.drain_s > 0:
                await drain(self.port, self.config.drain_s, interrupted=self.drain_interrupted)
            with contextlib.suppress(Exception):
                await self.health.end_watches()
            await self._server.stop(grace)
        await asyncio.to_thread(self.compiler.close)
        self.list_pool.close()
        if self.health_http is not None:
            await self.health_http.stop()
        with contextlib.suppress(AttributeError):
            await self.state_lists.stop()
        if self.backends is not None:
            await self.backends.close()
        if self.decision_log is not None:
            await self.decision_log.close()
        if self._metrics_http is not None:
            self._metrics_http[0].shutdown()
            self._metrics_http[0].server_close()
        self.telemetry.shutdown()

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()


def _bundle_source(cfg: BundleConfig, activate: Any) -> BundleSource:
    from server.bundle.archive import Limits
    from server.bundle.rotation import Sources
    from server.bundle.signing import Keyring

    keyring = None
    if cfg.public_keys or cfg.keyring_dir is not None:
        keyring = Keyring.load(cfg.public_keys, cfg.keyring_dir)
    settings = RemoteSettings(
        url=cfg.url,
        work_dir=cfg.work_dir,
        keyring=keyring,
        poll_s=cfg.poll_s,
        jitter_s=cfg.jitter_s,
        timeout_s=cfg.timeout_s,
        limits=Limits(max_archive_bytes=cfg.max_bytes, max_unpacked_bytes=cfg.max_unpacked_bytes),
        ca_file=cfg.ca_file,
        token=cfg.token,
        # Re-read when they change: rotations take effect without a restart.
        sources=Sources(
            url_file=cfg.url_file,
            token_file=cfg.token_file,
            key_files=cfg.public_keys,
            keyring_dir=cfg.keyring_dir,
            ca_file=cfg.ca_file,
        ),
        token_realm_hosts=cfg.token_realm_hosts,
    )
    return BundleSource(settings, activate)


async def serve(config: ServeConfig) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP forces a reload. Returns the exit code."""
    server = RingfenceServer(config)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    # Before start: the first policy build (which starts the compiler processes) takes a
    # moment, and a SIGHUP in it must reload, not end the process.
    def terminate() -> None:
        if stopping.is_set():
            server.drain_interrupted.set()  # a second signal: stop waiting for clients
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, terminate)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(server.reload()))
    await server.start()
    await stopping.wait()
    log.info("shutting down", extra={"drain_s": config.drain_s, "grace_s": config.grace_s})
    await server.stop()
    log.info("stopped")
    return 0
