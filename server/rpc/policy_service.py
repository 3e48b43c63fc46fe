"""``ringfence.v1.PolicyService``: what each tenant runs, a checker, a forced reload."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from dsl.diagnostics import Severity, render
from server.api import policy_pb2 as pb
from server.api import policy_pb2_grpc as pb_grpc
from server.bundle.load import read_library
from server.bundle.registry import TenantRegistry, TenantSlot
from server.bundle.remote import BundleStatus
from server.bundle.tenant_config import TENANT_NAME
from server.bundle.worker import CompilePool, PoolBusy, PoolClosed
from server.rpc.auth import authorize_admin, bearer_token
from server.rpc.errors import RequestError, invalid
from server.rpc.list_entries import ListEntries

_R = TypeVar("_R")

MAX_SOURCE = 1 << 20
POLICY_PATH = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_./-]{0,190}\.rf")


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


# In a listing of every tenant, each last_error is cut to this: a thousand broken tenants
# must still fit one reply. Asking for one tenant gives its whole (bounded) text.
LISTED_ERROR = 2048


def slot_status(
    slot: TenantSlot, error_limit: int = 0, lists: ListEntries | None = None
) -> pb.TenantPolicyStatus:
    error = slot.last_error
    if error_limit and len(error) > error_limit:
        error = error[:error_limit] + f"\n... (GetPolicyStatus tenant={slot.name!r} has all of it)"
    status = pb.TenantPolicyStatus(tenant=slot.name, last_error=error)
    if slot.bundle is not None:
        status.version = slot.bundle.version
        status.loaded_at.CopyFrom(_ts(slot.bundle.loaded_at))
        status.rule_count = slot.bundle.rule_count
        status.list_count = len(slot.bundle.lists)
        for name, entries, version in lists.mirror.status(slot.name) if lists else ():
            status.state_lists.add(list=name, entries=entries, version=version)
    if slot.last_error:
        status.last_error_at.CopyFrom(_ts(slot.last_error_at))
    return status


def bundle_status(st: BundleStatus) -> pb.BundleStatus:
    out = pb.BundleStatus(
        source=st.source,
        revision=st.revision,
        last_error=st.last_error,
        key_id=st.key_id,
        tenants=list(st.tenants),
        etag=st.etag,
    )
    for name in ("activated_at", "last_check_at", "last_success_at", "last_error_at"):
        if getattr(st, name):
            getattr(out, name).CopyFrom(_ts(getattr(st, name)))
    return out


class PolicyService(pb_grpc.PolicyServiceServicer):
    def __init__(
        self,
        registry: TenantRegistry,
        admin_hashes: frozenset[str],
        compiler: CompilePool,
        bundle: BundleStatus | None = None,
        lists: ListEntries | None = None,
    ) -> None:
        self.registry = registry
        self.admin_hashes = admin_hashes
        self.compiler = compiler
        self.bundle = bundle
        self.lists = lists

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            authorize_admin(self.admin_hashes, bearer_token(context.invocation_metadata()))
        except RequestError as exc:
            await context.abort(exc.code, exc.message, exc.trailing_metadata())

    async def GetPolicyStatus(
        self, request: pb.GetPolicyStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetPolicyStatusResponse:
        await self._admin(context)
        if request.tenant:
            slot = self.registry.slots.get(request.tenant)
            if slot is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown tenant {request.tenant!r}")
            assert slot is not None
            return pb.GetPolicyStatusResponse(tenants=[slot_status(slot, lists=self.lists)])
        response = pb.GetPolicyStatusResponse(
            tenants=[
                slot_status(self.registry.slots[n], LISTED_ERROR, self.lists)
                for n in self.registry.names()
            ]
        )
        if self.bundle is not None:
            response.bundle.CopyFrom(bundle_status(self.bundle))
        return response

    async def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidatePolicyResponse:
        await self._admin(context)
        error: RequestError | None = None
        if len(request.source) > MAX_SOURCE:
            error = invalid("source", f"larger than {MAX_SOURCE} bytes")
        elif request.tenant and not TENANT_NAME.fullmatch(request.tenant):
            error = invalid("tenant", "must match [a-z0-9][a-z0-9_-]*")
        elif request.path and not POLICY_PATH.fullmatch(request.path):
            # The path is quoted in every diagnostic: a plain, short relative .rf path.
            error = invalid("path", "must be a relative path like 'tenant/policy.rf' (<= 200)")
        if error is not None:
            await context.abort(error.code, error.message, error.trailing_metadata())
        path = request.path or f"{request.tenant or 'policy'}/policy.rf"
        root = self.registry.root
        library = (await asyncio.to_thread(read_library, root))[0] if root.is_dir() else {}
        # Checking costs CPU and memory in proportion to what the source asks for: it runs
        # in a worker process with a budget, and only so many may wait for one.
        try:
            diags = await self.compiler.check_async(
                {path: request.source}, library=library, tenant=request.tenant
            )
        except PoolBusy as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise  # unreachable: abort raises
        except PoolClosed as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise
        sources = {**library, path: request.source}
        return pb.ValidatePolicyResponse(
            ok=not any(d.severity == Severity.ERROR for d in diags),
            diagnostics=[
                pb.Diagnostic(
                    path=d.path,
                    line=d.line,
                    column=d.column,
                    end_line=d.end_line,
                    end_column=d.end_column,
                    severity=pb.SEVERITY_ERROR
                    if d.severity == Severity.ERROR
                    else pb.SEVERITY_WARNING,
                    message=d.message,
                    rendered=render(d, sources.get(d.path, "")),
                )
                for d in diags
            ],
        )

    async def AddListEntries(
        self, request: pb.AddListEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AddListEntriesResponse:
        return await self._lists(context, lambda lists, token: lists.add(request, token))

    async def RemoveListEntries(
        self, request: pb.RemoveListEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RemoveListEntriesResponse:
        return await self._lists(context, lambda lists, token: lists.remove(request, token))

    async def GetListEntries(
        self, request: pb.GetListEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetListEntriesResponse:
        return await self._lists(context, lambda lists, token: lists.get(request, token))

    async def _lists(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[ListEntries, str | None], Awaitable[_R]],
    ) -> _R:
        """A list call, authorised by the operator's or the tenant's admin token inside."""
        if self.lists is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server keeps no lists")
        assert self.lists is not None
        try:
            return await call(self.lists, bearer_token(context.invocation_metadata()))
        except RequestError as exc:
            await context.abort(exc.code, exc.message, exc.trailing_metadata())
            raise  # unreachable: abort raises

    async def ReloadPolicy(
        self, request: pb.ReloadPolicyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReloadPolicyResponse:
        await self._admin(context)
        await self.registry.reload()
        return pb.ReloadPolicyResponse(
            tenants=[
                slot_status(self.registry.slots[n], LISTED_ERROR, self.lists)
                for n in self.registry.names()
            ]
        )
