"""Storage keys and members: what reaches storage, with every number hashed.

A storage key is ``rf:{<hash tag>}:<identity>``. The identity is the aggregate's whole
definition as the language derives it (:func:`dsl.aggregates.identity`: kind, keys, field,
filter, window bucketing), never the offset or the name: ``count over 1h`` and the same
count 1h ago read the same buckets, and two counts that differ only in their ``where``
filter never share one. The hash tag is the
tenant, the key kind and the concrete key (:func:`hash_tag`): every aggregate over one
number (one device, one list, one segment) shares a Redis Cluster slot, and different
numbers spread over the cluster, so a big tenant is not bound to one node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from dsl.aggregates import AggregateSpec, IdentityPart, KeyKind, identity

KEY_PREFIX = "rf"

# Key kinds whose concrete value is never personal and helps an operator reading Redis.
# Everything else (numbers, lists of numbers, prefixes that may be long, devices, IPs) is
# hashed: a PREFIX with key_arg 11 would otherwise be a whole number.
_READABLE_KEYS = frozenset({KeyKind.SEGMENT, KeyKind.TENANT, KeyKind.APP})


@dataclass(frozen=True, slots=True)
class Family:
    """Everything of a storage key except the concrete key: what shares buckets. A key is
    ``head + storage_key + tail``, where ``storage_key`` is the concrete key as stored
    (quoted or hashed, :meth:`KeyHasher.key`)."""

    tenant: str
    head: str  # "rf:{<tenant>:<key kind>:" : the hash tag up to the concrete key
    tail: str  # "}:count:number:<arg>:<field>:<window>"


def hash_tag(tenant: str, key_kind: str, storage_key: str) -> str:
    """The Redis Cluster hash tag of every storage key about ``storage_key``: the one place
    that decides which keys share a slot (and so may share one script call).

    By what is counted, not by tenant: aggregates over one number, device, IP, app, list or
    segment live together; different ones spread over the cluster. The tenant is part of
    it, so tenants never share a key, and a composite key (``per (number, app)``) is one
    more ``key_kind`` whose ``storage_key`` hashes the combined value. Every part is
    quoted or hashed, so no part can contain a brace and end the tag early.
    """
    return f"{_q(tenant)}:{key_kind}:{storage_key}"


def claim_key(tag: str, request_hash: str) -> str:
    """Where a request id's claim lives: in the slot of ``tag`` (a tag of the keys the
    same script call writes, so the claim and the writes are one atomic script)."""
    return f"{KEY_PREFIX}:{{{tag}}}:rid:{request_hash}"


def list_keys(tenant: str, name: str) -> tuple[str, str]:
    """The storage of a list kept in state (``list NAME from state``): a HASH of entries
    (hashed number -> encoded entry) and its version counter, in one slot."""
    head = f"{KEY_PREFIX}:{{{hash_tag(tenant, 'statelist', _q(name))}}}"
    return f"{head}:entries", f"{head}:v"


def tag_of(key: str) -> str:
    """The hash tag of a storage key built here (the text between the first braces)."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]


def _q(text: str) -> str:
    # Quote ':' and '{}' so no tenant, list or field name can forge another key.
    return quote(text, safe="")


@lru_cache(maxsize=16384)
def _readable(value: str) -> str:
    # Segment prefixes, list names and the like repeat on every request: quote them once.
    return _q(value)


def family_of(tenant: str, spec: AggregateSpec) -> Family:
    """The storage key around a spec's concrete key: the hash tag's head (tenant and key
    kinds) and a tail that formats the spec's whole identity (:func:`dsl.aggregates.identity`),
    field by field. The state layer adds nothing and leaves nothing out: two specs share
    storage exactly when the language says they count the same thing."""
    return _family(tenant, identity(spec))


@lru_cache(maxsize=4096)
def _family(tenant: str, ident: tuple[IdentityPart, ...]) -> Family:
    fields = dict(ident)
    more = fields["more_keys"]
    assert isinstance(more, tuple)
    kinds = "+".join(
        [str(fields["key"]), *(str(pair[0]) for pair in more if isinstance(pair, tuple))]
    )
    head = f"{KEY_PREFIX}:{{{hash_tag(tenant, kinds, '')}"
    tail = "}:" + ":".join(_part(v) for _, v in ident)
    return Family(tenant=tenant, head=head, tail=tail)


# Identity values longer than this (a where filter's canonical text) are stored as a digest.
_LONG_PART = 32


def _part(value: object) -> str:
    if isinstance(value, tuple):
        text = ",".join(_part(v) for v in value)
    elif isinstance(value, bool):
        text = "1" if value else "0"
    else:
        text = str(value)
    if len(text) > _LONG_PART:
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10)
        return "~" + digest.hexdigest()
    return _q(text)


# Recent hashes are remembered: a list name or a segment is hashed on every request and a
# number several times per request (one ref per aggregate over it). Bounded by clearing.
_HASH_CACHE_MAX = 4096


class KeyHasher:
    """Keyed BLAKE2b for keys and members: stable across replicas sharing ``hash_key``,
    useless to anyone reading Redis without it."""

    __slots__ = ("_key", "_keys", "_members")

    def __init__(self, hash_key: bytes) -> None:
        if not isinstance(hash_key, bytes | bytearray) or not hash_key:
            raise ValueError("hash_key must be non-empty bytes")
        # BLAKE2b takes at most 64 key bytes; longer secrets are condensed, not truncated.
        self._key = bytes(hash_key) if len(hash_key) <= 64 else hashlib.blake2b(hash_key).digest()
        self._keys: dict[str, str] = {}
        self._members: dict[str, bytes] = {}

    def key(self, kind: KeyKind, value: str) -> str:
        if kind in _READABLE_KEYS:
            return _readable(value)
        return self.hashed_key(value)

    def hashed_key(self, value: str) -> str:
        found = self._keys.get(value)
        if found is None:
            digest = hashlib.blake2b(
                value.encode("utf-8", "surrogatepass"),
                key=self._key,
                digest_size=16,
                person=b"rf-key",
            )
            if len(self._keys) >= _HASH_CACHE_MAX:
                self._keys.clear()
            found = self._keys[value] = "h" + digest.hexdigest()
        return found

    def request_key(self, request_id: str) -> str:
        """A caller's request id as stored: hashed (it is caller text of any shape) and not
        remembered (ids are unique per request, so a cache would only churn)."""
        return hashlib.blake2b(
            request_id.encode("utf-8", "surrogatepass"),
            key=self._key,
            digest_size=16,
            person=b"rf-rid",
        ).hexdigest()

    def member(self, value: str) -> bytes:
        """8 bytes: collisions are negligible (~1e-13) at the exact-set cap of 1,000."""
        found = self._members.get(value)
        if found is None:
            if len(self._members) >= _HASH_CACHE_MAX:
                self._members.clear()
            found = self._members[value] = hashlib.blake2b(
                value.encode("utf-8", "surrogatepass"),
                key=self._key,
                digest_size=8,
                person=b"rf-mem",
            ).digest()
        return found


def is_readable(kind: KeyKind) -> bool:
    """Whether keys of this kind are stored as they are (quoted) rather than hashed."""
    return kind in _READABLE_KEYS


def spec_readable(spec: AggregateSpec) -> bool:
    """Whether a spec's keys are stored as they are: only if every part of it may be."""
    return all(k in _READABLE_KEYS for k, _ in spec.keys)


def readable_key(value: str) -> str:
    return _readable(value)


def run_suffix(key: str, member: str) -> str:
    """The digits of ``member`` after the run key's prefix.

    SEGMENT keys are prefixes of the national number (``"170"`` for ``17012345678``);
    PREFIX keys are prefixes of the E.164 digits (``"86170"``). The longest tail of the key
    that starts the member is stripped, so both yield ``"12345678"``. Adjacency only needs
    the numeric value, and storing the suffix rather than the whole number keeps full
    numbers out of every key (the key is the prefix, hashed for PREFIX).
    """
    for i in range(len(key)):
        if member.startswith(key[i:]):
            return member[len(key) - i :]
    return member
