"""PolicyService's list calls: add to, remove from and read the lists a tenant keeps in
state (``list NAME from state``; server/lists/writable.py says how they are kept).

Who may: the operator's admin token, or one of the tenant's own ``[auth]
admin_tokens_sha256`` (a tenant's reviewers change its lists and no one else's). A server
with no admin token and a tenant with none of its own is open, as PolicyService is.
Every change is logged on ``ringfence.audit`` with masked numbers and which token made it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence

import grpc
from google.protobuf import timestamp_pb2

from server.api import policy_pb2 as pb
from server.bundle.load import TenantBundle
from server.bundle.registry import TenantRegistry
from server.lists.entries import EntryError, exact_number
from server.lists.writable import (
    MAX_ENTRIES_PER_CALL,
    MAX_ENTRIES_PER_LIST,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_NOTE,
    MAX_TENANT_BYTES,
    MAX_TTL_S,
    StateListMirror,
    StoredEntry,
)
from server.phone import PhoneParser, mask
from server.rpc.auth import digest_in
from server.rpc.errors import FieldViolation, RequestError, invalid
from server.state import StateError
from server.state.lists import ListStore

audit = logging.getLogger("ringfence.audit")

# GetListEntries pages: what a caller gets without asking, the most it may ask, and the
# most one reply carries (gRPC refuses a message past 4 MiB by default).
PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 3 * 1024 * 1024


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class ListEntries:
    def __init__(
        self,
        registry: TenantRegistry,
        mirror: StateListMirror,
        parser: PhoneParser,
        admin_hashes: frozenset[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.mirror = mirror
        self.parser = parser
        self.admin_hashes = admin_hashes
        self.clock = clock

    # -- the calls ----------------------------------------------------------------------------

    async def add(
        self, req: pb.AddListEntriesRequest, token: str | None
    ) -> pb.AddListEntriesResponse:
        bundle, by = self._authorised(req.tenant, req.list, token)
        if not req.entries:
            raise _bad([FieldViolation("entries", "no entries to add")])
        if len(req.entries) > MAX_ENTRIES_PER_CALL:
            raise _bad([FieldViolation("entries", f"more than {MAX_ENTRIES_PER_CALL} in one call")])
        now = self.clock()
        problems: list[FieldViolation] = []
        puts: dict[str, bytes] = {}
        masked: list[str] = []
        for i, e in enumerate(req.entries):
            at = f"entries[{i}]"
            e164 = self._number(bundle, e.number, f"{at}.number", problems)
            if not 0 <= e.ttl_seconds <= MAX_TTL_S:
                problems.append(FieldViolation(f"{at}.ttl_seconds", f"0 to {MAX_TTL_S} seconds"))
            if len(e.note) > MAX_NOTE:
                problems.append(FieldViolation(f"{at}.note", f"longer than {MAX_NOTE} characters"))
            if len(e.labels) > MAX_LABELS:
                problems.append(FieldViolation(f"{at}.labels", f"more than {MAX_LABELS} labels"))
            for k, v in e.labels.items():
                if not k or len(k) > MAX_LABEL_KEY or len(v) > MAX_LABEL_VALUE or k == "note":
                    problems.append(
                        FieldViolation(
                            f"{at}.labels",
                            f"keys 1 to {MAX_LABEL_KEY} characters (not 'note'), values at"
                            f" most {MAX_LABEL_VALUE}",
                        )
                    )
                    break
            if e164 is None or problems:
                continue
            entry = StoredEntry(
                masked=mask(e164),
                note=e.note,
                labels=dict(e.labels),
                added_at=now,
                expires_at=now + e.ttl_seconds if e.ttl_seconds else None,
                added_by=by,
            )
            puts[self.mirror.hasher.hashed_key(e164)] = entry.encode()
            masked.append(entry.masked)
        if problems:
            raise _bad(problems)
        store = self._store(bundle)
        try:
            version, held = await store.read(bundle.name, req.list)
            key = (bundle.config.state, bundle.name, req.list)
            # Expired entries make room; a list past its bound refuses more.
            expired = [
                f
                for f, e in self.mirror.decoded(key, held).items()
                if not e.live(now) and f not in puts
            ]
            if (
                len(held) - len(expired) + sum(1 for f in puts if f not in held)
                > MAX_ENTRIES_PER_LIST
            ):
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"list {req.list!r} would hold more than {MAX_ENTRIES_PER_LIST} entries",
                )
            gone = set(expired) | puts.keys()
            size = (
                self.mirror.tenant_bytes(bundle.name, key)
                + sum(len(v) for f, v in held.items() if f not in gone)
                + sum(map(len, puts.values()))
            )
            if size > MAX_TENANT_BYTES:
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"tenant {bundle.name!r}'s lists kept in state would take {size:,} bytes,"
                    f" more than {MAX_TENANT_BYTES:,} (shorter notes and labels, or fewer"
                    " entries)",
                )
            added, updated, _, version = await store.write(bundle.name, req.list, puts, expired)
        except StateError as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"state backend: {exc}") from None
        await self._refreshed(bundle, req.list)
        audit.info(
            "list entries added",
            extra={
                "tenant": bundle.name,
                "list": req.list,
                "numbers": masked,
                "ttl_s": sorted({e.ttl_seconds for e in req.entries}),
                "by": by,
                "version": version,
            },
        )
        return pb.AddListEntriesResponse(added=added, updated=updated, version=version)

    async def remove(
        self, req: pb.RemoveListEntriesRequest, token: str | None
    ) -> pb.RemoveListEntriesResponse:
        bundle, by = self._authorised(req.tenant, req.list, token)
        if len(req.numbers) > MAX_ENTRIES_PER_CALL:
            raise _bad([FieldViolation("numbers", f"more than {MAX_ENTRIES_PER_CALL} in one call")])
        problems: list[FieldViolation] = []
        fields = []
        masked = []
        for i, raw in enumerate(req.numbers):
            e164 = self._number(bundle, raw, f"numbers[{i}]", problems)
            if e164 is not None:
                fields.append(self.mirror.hasher.hashed_key(e164))
                masked.append(mask(e164))
        if problems:
            raise _bad(problems)
        try:
            _, _, removed, version = await self._store(bundle).write(
                bundle.name, req.list, {}, fields
            )
        except StateError as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"state backend: {exc}") from None
        await self._refreshed(bundle, req.list)
        audit.info(
            "list entries removed",
            extra={"tenant": bundle.name, "list": req.list, "numbers": masked, "by": by},
        )
        return pb.RemoveListEntriesResponse(removed=removed, version=version)

    async def get(
        self, req: pb.GetListEntriesRequest, token: str | None
    ) -> pb.GetListEntriesResponse:
        bundle, _ = self._authorised(req.tenant, req.list, token)
        try:
            version, held = await self._store(bundle).read(bundle.name, req.list)
        except StateError as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"state backend: {exc}") from None
        size = req.page_size or PAGE_SIZE
        if not 0 < size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"0 (for {PAGE_SIZE}) or 1 to {MAX_PAGE_SIZE}")
        after = _page_position(req.page_token)
        now = self.clock()
        decoded = self.mirror.decoded((bundle.config.state, bundle.name, req.list), held)
        # In order of addition; the stored field (the number's hash) breaks ties, so a
        # position names one place even among entries added in the same instant.
        entries = sorted(
            ((e.added_at, f, e) for f, e in decoded.items() if e.live(now)),
            key=lambda t: (t[0], t[1]),
        )
        out = pb.GetListEntriesResponse(version=version, total_size=len(entries))
        first = 0
        if after is not None:
            first = bisect.bisect_right(entries, after, key=lambda t: (t[0], t[1]))
        room = 0
        added_at_before, f_before = 0.0, ""
        for taken, (added_at, f, e) in enumerate(entries[first:]):
            # The stored bytes hold what the reply will, give or take the field tags.
            cost = len(held.get(f, b"")) + 64
            if taken == size or (taken and room + cost > MAX_PAGE_BYTES):
                out.next_page_token = _page_token(added_at_before, f_before)
                break
            item = out.entries.add(
                masked_number=e.masked,
                note=e.note,
                labels=dict(e.labels),
                added_by=e.added_by,
            )
            item.added_at.CopyFrom(_ts(e.added_at))
            if e.expires_at is not None:
                item.expires_at.CopyFrom(_ts(e.expires_at))
            room += cost
            added_at_before, f_before = added_at, f
        return out

    # -- shared --------------------------------------------------------------------------------

    def _authorised(self, tenant: str, name: str, token: str | None) -> tuple[TenantBundle, str]:
        """The tenant's live bundle and who is asking, or why not."""
        bundle = self.registry.get(tenant)
        if bundle is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"unknown tenant {tenant!r}")
        digest = hashlib.sha256(token.encode()).hexdigest() if token is not None else ""
        if self.admin_hashes and digest and digest_in(digest, self.admin_hashes):
            by = "operator"
        elif (
            bundle.config.admin_token_hashes
            and digest
            and digest_in(digest, bundle.config.admin_token_hashes)
        ):
            by = digest[:12]
        elif not self.admin_hashes and not bundle.config.admin_token_hashes:
            by = "open"
        elif token is None:
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "missing admin bearer token")
        else:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED, f"not an admin token for tenant {tenant!r}"
            )
        declared = {d.name for d in bundle.policy.lists if d.from_state}
        if name not in declared:
            shown = ", ".join(sorted(declared)) or "none"
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"tenant {tenant!r} keeps no list {name[:64]!r} in state"
                f" (`list NAME from state` in its policy; it has: {shown})",
            )
        return bundle, by

    def _number(
        self, bundle: TenantBundle, raw: str, at: str, problems: list[FieldViolation]
    ) -> str | None:
        if not raw or len(raw) > 64:
            problems.append(FieldViolation(at, "a phone number of 1 to 64 characters"))
            return None
        try:
            return exact_number(raw, bundle.config.default_region or "CN", self.parser)
        except EntryError as exc:
            problems.append(FieldViolation(at, str(exc)))
            return None

    def _store(self, bundle: TenantBundle) -> ListStore:
        try:
            return self.mirror.pool.backend_for(bundle.name, bundle.config.state).lists
        except StateError as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"state backend: {exc}") from None

    async def _refreshed(self, bundle: TenantBundle, name: str) -> None:
        """This replica sees its own change at once; the others within a poll."""
        await self.mirror.refresh([(bundle.config.state, bundle.name, name)])


def _bad(problems: Sequence[FieldViolation]) -> RequestError:
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "; ".join(f"{p.field}: {p.description}" for p in problems),
        tuple(problems),
    )


def _page_token(added_at: float, stored: str) -> str:
    """Where the next page starts: after the entry added at ``added_at`` under ``stored``
    (the number's hash, never the number)."""
    raw = json.dumps([added_at, stored], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_position(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    bad = invalid("page_token", "not a next_page_token this server gave")
    if len(token) > 512:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        added_at, stored = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise bad from None
    if not isinstance(added_at, int | float) or isinstance(added_at, bool):
        raise bad
    try:
        at = float(added_at)  # an int of 400 digits fits in the token, not in a float
    except OverflowError:
        raise bad from None
    if not math.isfinite(at) or not isinstance(stored, str):
        raise bad
    return at, stored
