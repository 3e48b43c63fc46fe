"""The server as an operator runs it: a child process, health, SIGTERM, SIGHUP."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import read_json_line, request, server_process, wait_serving

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_sigterm_drains_then_exits_0(rules_copy: Path) -> None:
    """SIGTERM: health turns NOT_SERVING at once, a stream ends at its item boundary with
    UNAVAILABLE (every item read was answered), new connections are refused, calls on the
    open connection are still answered, and the process exits 0 once that connection is
    gone. Every step waits for a state, never for time."""
    # A long age: the open connection must not be recycled while the test looks at it.
    with server_process(rules_copy, "--max-connection-age", "120", "--grace", "10") as srv:
        wait_serving(srv.address)
        channel = grpc.insecure_channel(srv.address)
        stub = pb_grpc.DecisionServiceStub(channel)
        release = threading.Event()

        def items():  # type: ignore[no-untyped-def]
            yield request("+8613800138000", request_id="before", dry_run=True)
            release.wait(60)  # idle: the server is waiting for the next item

        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        assert next(watch).status == SERVING
        responses = stub.EvaluateStream(items(), timeout=60)
        assert next(responses).request_id == "before"

        srv.proc.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING
        with pytest.raises(grpc.RpcError) as ended:
            next(responses)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resend the items without a response" in ended.value.details()
        release.set()

        # A new connection is refused (the listener closes right after health turns)...
        while not refused(srv.address):
            pass
        # ...while the open one is still served: its calls are never dropped.
        resp = stub.Evaluate(request("+8613800138000", dry_run=True), timeout=10)
        assert resp.request_id
        assert srv.proc.poll() is None  # still draining: a client is connected
        channel.close()  # the client leaves: the drain is over
        assert srv.proc.wait(60) == 0


def refused(address: str) -> bool:
    """Whether a call on a connection of its own (not one shared with the test's other
    channels) is refused."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(address, options=options) as fresh:
        try:
            pb_grpc.DecisionServiceStub(fresh).Evaluate(
                request("+8613800138000", dry_run=True), timeout=10
            )
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAVAILABLE
    return False


def test_a_second_sigterm_ends_the_drain(rules_copy: Path) -> None:
    with server_process(rules_copy, "--max-connection-age", "120") as srv:
        wait_serving(srv.address)
        with grpc.insecure_channel(srv.address) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            stub.Evaluate(request("+8613800138000", dry_run=True), timeout=10)
            srv.proc.send_signal(signal.SIGTERM)
            while True:  # draining once the open connection is the only one served
                line = read_json_line(srv.proc, time.monotonic() + 60)
                assert line is not None, "no drain"
                if str(line.get("msg", "")).startswith("draining"):
                    break
            srv.proc.send_signal(signal.SIGTERM)
            assert srv.proc.wait(60) == 0


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
