"""Bundle signatures: Ed25519 or ECDSA P-256 (ES256) over the manifest's exact bytes.

A signature names its key by ``kid``: the first 16 hex digits of the SHA-256 of the public
key's DER SubjectPublicKeyInfo, so a keyring can hold several keys (rotation) and a bundle
signed by a key that is not in it is refused by name. ES256 signatures are DER-encoded, as
``openssl dgst -sha256 -sign`` writes them, so a bundle can be signed outside this tool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

Algorithm = Literal["EdDSA", "ES256"]
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
MAX_KEY_FILE = 64 * 1024
MAX_KEYS = 64


class SignatureError(ValueError):
    """A key or signature that cannot be used, or a signature that does not verify."""


def key_id(key: PublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _algorithm(key: PublicKey | PrivateKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise SignatureError(f"unsupported curve {key.curve.name}: use Ed25519 or P-256 (ES256)")


def load_private_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise SignatureError(f"{path}: unsupported key type: use Ed25519 or P-256 (ES256)")
    _algorithm(key)
    return key


def load_public_key(path: Path) -> PublicKey:
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise SignatureError(f"{path}: larger than {MAX_KEY_FILE} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise SignatureError(f"{path}: unsupported key type: use Ed25519 or P-256 (ES256)")
    _algorithm(key)
    return key


@dataclass(frozen=True, slots=True)
class Keyring:
    """The public keys a server accepts bundles from, by key id."""

    keys: Mapping[str, PublicKey]

    @classmethod
    def of(cls, keys: Iterable[PublicKey]) -> Keyring:
        return cls({key_id(k): k for k in keys})

    @classmethod
    def load(cls, files: Iterable[Path] = (), directory: Path | None = None) -> Keyring:
        """Keys from PEM files and from every ``*.pem`` / ``*.pub`` in ``directory`` (a
        mounted ConfigMap or Secret: its ``..data`` entries are skipped)."""
        paths = key_paths(files, directory)
        if len(paths) > MAX_KEYS:
            raise SignatureError(f"more than {MAX_KEYS} public keys")
        ring = cls.of(load_public_key(p) for p in paths)
        if not ring.keys:
            raise SignatureError("the keyring holds no public key (*.pem)")
        return ring

    @classmethod
    def load_available(
        cls, files: Iterable[Path] = (), directory: Path | None = None
    ) -> tuple[Keyring, list[str]]:
        """The keys that load now, and why the others did not: for a running server
        re-reading its keys, which must never trust more than the files say (a key that is
        gone or unreadable is not trusted) and never stop over one bad file. The keyring
        may be empty: every bundle is then refused."""
        errors: list[str] = []
        try:
            paths = key_paths(files, directory)
        except SignatureError as exc:
            return cls({}), [str(exc)]
        if len(paths) > MAX_KEYS:
            errors.append(f"more than {MAX_KEYS} public keys: only the first {MAX_KEYS} are read")
            paths = paths[:MAX_KEYS]
        keys: list[PublicKey] = []
        for p in paths:
            try:
                keys.append(load_public_key(p))
            except SignatureError as exc:
                errors.append(str(exc))
        return cls.of(keys), errors


def key_paths(files: Iterable[Path] = (), directory: Path | None = None) -> list[Path]:
    """The key files a keyring is read from: ``files``, then the ``*.pem`` / ``*.pub`` in
    ``directory`` by name."""
    paths = list(files)
    if directory is not None:
        if not directory.is_dir():
            raise SignatureError(f"keyring directory not found: {directory}")
        paths += sorted(
            p
            for p in directory.iterdir()
            if p.suffix in (".pem", ".pub") and not p.name.startswith(".") and p.is_file()
        )
    return paths


def sign(manifest: bytes, key: PrivateKey) -> bytes:
    """The signature document stored beside the manifest in a bundle."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(manifest)
    else:
        raw = key.sign(manifest, ec.ECDSA(hashes.SHA256()))
    doc = {
        "alg": _algorithm(key),
        "kid": key_id(key.public_key()),
        "signature": base64.b64encode(raw).decode(),
    }
    return json.dumps(doc, sort_keys=True).encode()


def verify(manifest: bytes, signature_doc: bytes, keyring: Keyring) -> str:
    """The key id that signed ``manifest``; raises SignatureError otherwise."""
    try:
        doc = json.loads(signature_doc)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("signature: not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"alg", "kid", "signature"}:
        raise SignatureError("signature: expected exactly the keys alg, kid, signature")
    alg, kid, sig = doc["alg"], doc["kid"], doc["signature"]
    if not all(isinstance(v, str) for v in (alg, kid, sig)):
        raise SignatureError("signature: alg, kid and signature must be strings")
    key = keyring.keys.get(kid)
    if key is None:
        known = ", ".join(sorted(keyring.keys)) or "none"
        raise SignatureError(f"signed by key {kid[:16]!r}, which is not trusted (trusted: {known})")
    if _algorithm(key) != alg:
        raise SignatureError(f"signature algorithm {alg[:16]!r} does not match key {kid}")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature: not base64") from None
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, manifest)
        else:
            key.verify(raw, manifest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(f"the manifest's signature does not verify with key {kid}") from None
    return str(kid)


def generate(kind: Literal["ed25519", "es256"]) -> tuple[bytes, bytes]:
    """A new key pair as (private PEM, public PEM)."""
    private: PrivateKey
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
