"""The server as an operator runs it: a child process, health, SIGTERM, SIGHUP."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import request, server_process, wait_serving

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_sigterm_lets_in_flight_calls_finish_and_exits_0(rules_copy: Path) -> None:
    with server_process(rules_copy, "--grace", "10") as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.DecisionServiceStub(ch)
            first_answered = threading.Event()
            release = threading.Event()

            def requests():  # type: ignore[no-untyped-def]
                yield request("+8613800138000", request_id="before", dry_run=True)
                # Hold the stream open until SIGTERM has been delivered.
                release.wait(20)
                for i in range(50):
                    yield request(f"+86138001{i:05d}", request_id=f"after{i}", dry_run=True)

            # Watch health from before the signal: the open stream sees it turn.
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=20
            )
            assert next(watch).status == SERVING
            responses = stub.EvaluateStream(requests(), timeout=30)
            got = []
            for resp in responses:
                got.append(resp.request_id)
                if resp.request_id == "before":
                    first_answered.set()
                    srv.proc.send_signal(signal.SIGTERM)
                    # Health turns NOT_SERVING at once, while the stream is still open...
                    assert next(watch).status == NOT_SERVING
                    # ...and new calls are refused once the listener closes (health turns
                    # first, so a call or two may still slip in).
                    refused = None
                    deadline = time.monotonic() + 10
                    while refused is None and time.monotonic() < deadline:
                        try:
                            stub.Evaluate(request("+8613800138000", dry_run=True), timeout=5)
                        except grpc.RpcError as exc:
                            refused = exc.code()
                    assert refused in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                    release.set()
            assert first_answered.is_set()
            assert got == ["before"] + [f"after{i}" for i in range(50)]
            assert responses.code() == grpc.StatusCode.OK
        assert srv.proc.wait(20) == 0


def test_health_not_serving_until_a_policy_loads(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    (rules / "broken").mkdir(parents=True)
    (rules / "broken" / "policy.rf").write_text("rule x { when ??? }\n")
    with server_process(rules) as srv:
        with grpc.insecure_channel(srv.address) as ch:
            grpc.channel_ready_future(ch).result(timeout=20)
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "ringfence.v1.DecisionService"):
                resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert resp.status == NOT_SERVING
            # Fix the policy and ask for a reload with SIGHUP: the server turns SERVING.
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
            (rules / "broken" / "policy.rf").write_text(
                'rule ok {\n  when phone.valid == false\n  then review\n  reason "invalid"\n}\n'
            )
            srv.proc.send_signal(signal.SIGHUP)
            statuses = []
            for status in watch:
                statuses.append(status.status)
                if status.status == SERVING:
                    watch.cancel()
                    break
            assert statuses[-1] == SERVING
            stub = pb_grpc.DecisionServiceStub(ch)
            resp = stub.Evaluate(request("+86 123", tenant="broken"), timeout=5)
            assert resp.action == pb.ACTION_REVIEW
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(20) == 0


def test_env_vars_configure_serve(rules_copy: Path) -> None:
    with server_process(rules_copy, env={"RINGFENCE_LOG_LEVEL": "debug"}) as srv:
        wait_serving(srv.address)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(20) == 0
