"""The baseline for bench/echo_ratio.py: a bare grpc.aio server on the same service name
that answers every Evaluate with a fixed, realistically sized response. No validation, no
policy, no state: what gRPC in Python costs by itself."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc

RESPONSE = pb.EvaluateResponse(
    action=pb.ACTION_ALLOW,
    risk_level=2,
    tags=["privacy_number"],
    matches=[
        pb.RuleMatch(
            rule="privacy_number_low_volume",
            action=pb.ACTION_ALLOW,
            reason="privacy number (risk2), 3 list hits this hour",
        )
    ],
    policy_version="0123456789abcdef",
    phone=pb.PhoneInfo(
        e164="+8617000000001",
        valid=True,
        region="CN",
        number_type="mobile",
        carrier="China Telecom",
        segment_kind="mvno",
    ),
    request_id="0" * 32,
)


class Echo(pb_grpc.DecisionServiceServicer):  # only Evaluate is measured
    async def Evaluate(self, request: pb.EvaluateRequest, context: object) -> pb.EvaluateResponse:
        return RESPONSE


async def main() -> None:
    server = grpc.aio.server()
    pb_grpc.add_DecisionServiceServicer_to_server(Echo(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"msg": "listening", "port": port}), file=sys.stderr, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
