"""The server span of each RPC: a small grpc.aio interceptor.

opentelemetry-instrumentation-grpc's aio interceptor wraps every servicer context in a
proxy object and parses the peer address on every call; measured here it cost about a
third of Evaluate's throughput (docs/benchmarks.md). This one does only what we use:
continue the caller's W3C trace context, one SERVER span named for the method with the
``rpc.*`` attributes, the status code, and nothing for health checks and reflection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

_UNTRACED = ("/grpc.health.v1.", "/grpc.reflection.")


def _carrier(metadata: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate", "baggage") and isinstance(value, str):
            out[key] = value
    return out


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._handlers: dict[str, tuple[Any, Any]] = {}

    def _attributes(self, method: str) -> dict[str, str]:
        service, _, name = method.lstrip("/").rpartition("/")
        return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}

    def _finish(self, span: trace.Span, context: Any, exc: BaseException | None) -> None:
        # An aborted call has its code on the context; a call that returned is OK.
        code = context.code()
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_UNTRACED):
            return handler
        # The wrapped handler depends only on the method (the caller's trace context is read
        # from the call itself), so it is built once per method, not once per call.
        wrapped = self._handlers.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = self._handlers[method] = (handler, self._wrap(method, handler))
        return wrapped[1]

    def _wrap(self, method: str, handler: Any) -> Any:
        tracer = self.tracer
        attributes = self._attributes(method)
        finish = self._finish

        def start(context: Any) -> Any:
            parent = propagate.extract(_carrier(context.invocation_metadata()))
            return tracer.start_as_current_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            )

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                with start(context) as span:
                    try:
                        response = await inner_uu(request, context)
                    except BaseException as exc:
                        finish(span, context, exc)
                        raise
                    finish(span, context, None)
                    return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_ss: Any = handler.stream_stream

            async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                with start(context) as span:
                    try:
                        async for response in inner_ss(requests, context):
                            yield response
                    except BaseException as exc:
                        finish(span, context, exc)
                        raise
                    finish(span, context, None)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no unary-stream or stream-unary methods in our services
