"""A client that knows nothing but the server address can discover and call the API,
the way grpcurl does, through server reflection."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from support import Running


def _discover_and_call(address: str) -> tuple[list[str], dict, list[str]]:  # type: ignore[type-arg]
    with grpc.insecure_channel(address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(db.get_services())
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("ringfence.v1.DecisionService")
        method = svc.FindMethodByName("Evaluate")
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        req = json_format.ParseDict(
            {
                "tenant": "demo",
                "phone_number": "+86 138 0013 8000",
                "event": {"scene": "register", "app_id": "shop"},
            },
            req_cls(),
        )
        call = channel.unary_unary(
            "/ringfence.v1.DecisionService/Evaluate",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        resp = json_format.MessageToDict(call(req, timeout=5), preserving_proto_field_name=True)
        policy = pool.FindServiceByName("ringfence.v1.PolicyService")
        return services, resp, [m.name for m in policy.methods]


async def test_reflection_lists_services_and_drives_evaluate(demo: Running) -> None:
    services, resp, policy_methods = await asyncio.to_thread(_discover_and_call, demo.address)
    assert "ringfence.v1.DecisionService" in services
    assert "ringfence.v1.PolicyService" in services
    assert "grpc.health.v1.Health" in services
    assert resp["phone"]["e164"] == "+8613800138000"
    assert resp["action"] in ("ACTION_ALLOW", "ACTION_REVIEW", "ACTION_BLOCK")
    assert {"GetPolicyStatus", "ValidatePolicy"} <= set(policy_methods)


async def test_reflection_v1_name_answers_too(demo: Running) -> None:
    # grpcurl asks grpc.reflection.v1 first; the messages are wire-identical to v1alpha.
    from grpc_reflection.v1alpha import reflection_pb2

    call = demo.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    stream = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = []
    async for resp in stream:
        names = [s.name for s in resp.list_services_response.service]
    assert "ringfence.v1.DecisionService" in names
