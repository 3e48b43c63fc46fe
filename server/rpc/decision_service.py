"""``ringfence.v1.DecisionService``: unary, batch and streaming entry points."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from server.api import decision_pb2 as pb
from server.api import decision_pb2_grpc as pb_grpc
from server.rpc.auth import authorize_stream, bearer_token
from server.rpc.decide import Decider
from server.rpc.decoding import Undecodable
from server.rpc.errors import RequestError, internal_status
from server.rpc.validation import validate_batch_size

log = logging.getLogger("ringfence.decision")

# How a stream ends when the server shuts down: every item read has been answered, so a
# client re-sends the items it has no answer for on a new stream (docs/api.md).
DRAINING = "the server is shutting down: resend the items without a response on a new stream"
# Before the first policy loads the server has no tenant at all: every name would be
# "unknown" (NOT_FOUND, which callers must not retry) when the truth is "not yet".
NOT_READY = "no policy is loaded yet (the server is starting or waiting for its first bundle)"


class DecisionService(pb_grpc.DecisionServiceServicer):
    def __init__(
        self,
        decider: Decider,
        *,
        stream_idle_timeout_s: float = 0.0,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.decider = decider
        # 0: a stream may wait for its next message for ever.
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.open_streams = 0  # authenticated streams running now (a gauge)
        self._ready = ready
        self._draining = False
        # Stream handlers waiting for their next item: the ones a drain may interrupt.
        self._reading: set[asyncio.Task[Any]] = set()

    def drain(self) -> None:
        """End every EvaluateStream at its next item boundary with UNAVAILABLE: streams
        idle on a read at once, streams in the middle of an item once it is answered."""
        self._draining = True
        for task in list(self._reading):
            task.cancel()

    async def _evaluate(
        self,
        item: pb.EvaluateRequest,
        token: str | None,
        *,
        field_prefix: str = "",
        out: pb.EvaluateResponse | None = None,
    ) -> pb.EvaluateResponse:
        """One decision, with what the metrics need around it: when it arrived (errors are
        timed too), the not-ready answer, and internal errors counted as INTERNAL."""
        telemetry = self.decider.telemetry
        telemetry.request_started()
        if not self._ready():
            telemetry.request_failed(item.tenant, grpc.StatusCode.UNAVAILABLE, known=False)
            raise RequestError(grpc.StatusCode.UNAVAILABLE, NOT_READY)
        try:
            return await self.decider.evaluate(item, token, field_prefix=field_prefix, out=out)
        except RequestError:
            raise  # counted by the decider
        except Exception:
            known = item.tenant in self.decider.registry.slots
            telemetry.request_failed(item.tenant, grpc.StatusCode.INTERNAL, known=known)
            raise

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateResponse:
        token = bearer_token(context.invocation_metadata())
        try:
            return await self._evaluate(request, token)
        except RequestError as exc:
            await context.abort(exc.code, exc.message, exc.trailing_metadata())
            raise  # unreachable: abort raises
        except Exception:
            # As batch and stream do: INTERNAL, logged here, never Python's text in UNKNOWN.
            log.exception("evaluate failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise

    async def EvaluateBatch(
        self, request: pb.EvaluateBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EvaluateBatchResponse:
        try:
            validate_batch_size(len(request.requests))
        except RequestError as exc:
            await context.abort(exc.code, exc.message, exc.trailing_metadata())
        token = bearer_token(context.invocation_metadata())
        out = pb.EvaluateBatchResponse()
        results = out.results
        for i, item in enumerate(request.requests):
            result = results.add()
            try:
                # Errors are raised before anything is written into the slot.
                await self._evaluate(
                    item, token, field_prefix=f"requests[{i}].", out=result.response
                )
            except RequestError as exc:
                result.error.CopyFrom(exc.to_status())
            except Exception:  # one broken item never fails the batch
                log.exception("batch item %d failed", i)
                result.error.CopyFrom(internal_status())
        return out

    async def EvaluateStream(
        self,
        request_iterator: AsyncIterator[pb.EvaluateRequest | Undecodable],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.EvaluateResponse]:
        token = bearer_token(context.invocation_metadata())
        try:
            slots = self.decider.registry.slots.values()
            authorize_stream(token, (s.bundle.config for s in slots if s.bundle is not None))
        except RequestError as exc:
            await context.abort(exc.code, exc.message, exc.trailing_metadata())
        self.open_streams += 1
        try:
            async for response in self._stream(request_iterator, context, token):
                yield response
        finally:
            self.open_streams -= 1

    async def _stream(
        self,
        request_iterator: AsyncIterator[pb.EvaluateRequest | Undecodable],
        context: grpc.aio.ServicerContext[Any, Any],
        token: str | None,
    ) -> AsyncIterator[pb.EvaluateResponse]:
        idle = self.stream_idle_timeout_s
        task = asyncio.current_task()
        assert task is not None
        items = aiter(request_iterator)
        while not self._draining:
            self._reading.add(task)
            try:
                async with asyncio.timeout(idle) if idle > 0 else contextlib.nullcontext():
                    item = await anext(items)
            except StopAsyncIteration:
                return
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no message for {idle:g} s: the stream is closed (open a new one)",
                )
            except asyncio.CancelledError:
                if not self._draining:
                    raise
                task.uncancel()  # cancelled by drain() while idle: end it as drained
                break
            finally:
                self._reading.discard(task)
            if type(item) is Undecodable:
                # Answered like any other bad item; the stream goes on.
                yield pb.EvaluateResponse(
                    error=RequestError(grpc.StatusCode.INVALID_ARGUMENT, item.message).to_status()
                )
                continue
            assert isinstance(item, pb.EvaluateRequest)
            try:
                yield await self._evaluate(item, token)
            except RequestError as exc:
                yield pb.EvaluateResponse(request_id=item.request_id, error=exc.to_status())
            except Exception:
                log.exception("stream item failed")
                yield pb.EvaluateResponse(request_id=item.request_id, error=internal_status())
        await context.abort(grpc.StatusCode.UNAVAILABLE, DRAINING)
