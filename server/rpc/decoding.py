"""Registering our services so that a message that does not decode is INVALID_ARGUMENT.

gRPC runs the request deserializer before any servicer code; when it raises (protobuf's
DecodeError for bytes that are not the message), grpc.aio answers UNKNOWN with Python's
exception text. Here the deserializer never raises: it returns an :class:`Undecodable`
marker, and the handler answers a unary call with INVALID_ARGUMENT before the servicer
sees it. Streaming servicers get the marker as an item and answer that item alone (one
bad message in a stream does not end the stream).

The handlers are built from the service descriptor, so every method of every service
registered this way is covered, including ones added to the proto later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


class Undecodable:
    """Stands for a request message that did not decode."""

    __slots__ = ("reason", "type_name")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name = type_name
        self.reason = reason

    @property
    def message(self) -> str:
        return f"the request is not a valid {self.type_name} message ({self.reason})"


def _decoder(cls: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    from_string = cls.FromString
    name = cls.DESCRIPTOR.full_name

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return from_string(data)
        except Exception:  # DecodeError, and whatever else a corrupt message may raise
            return Undecodable(name, "the bytes do not parse as protobuf of that type")

    return decode


Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _guard_unary(behaviour: Unary) -> Unary:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if type(request) is Undecodable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behaviour(request, context)

    return handler


def add_service(server: grpc.aio.Server, service: ServiceDescriptor, servicer: object) -> None:
    """What the generated ``add_*Servicer_to_server`` does, with decoding guarded."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        decode = _decoder(GetMessageClass(method.input_type))
        serialize = GetMessageClass(method.output_type).SerializeToString
        behaviour = getattr(servicer, method.name)
        if not method.client_streaming and not method.server_streaming:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _guard_unary(behaviour),
                request_deserializer=decode,
                response_serializer=serialize,
            )
        elif method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                behaviour, request_deserializer=decode, response_serializer=serialize
            )
        else:  # none in our protos; refuse rather than register an unguarded handler
            raise NotImplementedError(f"{method.full_name}: one-sided streaming")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]
