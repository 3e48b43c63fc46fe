"""Server TLS whose certificate follows its files: cert-manager renewals without a restart.

gRPC asks :meth:`ReloadingCertificates.fetch` before every new TLS handshake (from a
C-core thread). It looks at the files at most once per ``check_interval_s`` (a stat each,
following the ``..data`` symlink a mounted Secret swaps) and answers with a new
configuration only when they changed and parse as a matching key and certificate; a
half-written or broken pair is logged and the previous certificate stays in use.
Connections already open keep the certificate they were made with.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger("ringfence.tls")

Stamp = tuple[tuple[int, int, int, int], ...]


def _stamp(paths: tuple[Path, ...]) -> Stamp:
    out = []
    for p in paths:
        st = os.stat(p)  # follows symlinks: a Secret update swaps ..data
        out.append((st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _check_pair(key: bytes, cert: bytes) -> None:
    """Raise ValueError unless ``key`` is the private key of the first certificate."""
    certificate = x509.load_pem_x509_certificate(cert)
    private = serialization.load_pem_private_key(key, password=None)
    cert_pub = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_pub = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if cert_pub != key_pub:
        raise ValueError("the private key does not belong to the certificate")


class ReloadingCertificates:
    def __init__(
        self,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._paths = tuple(p for p in (cert, key, client_ca) if p is not None)
        self._stamp: Stamp = ()
        self._next_check = 0.0
        self.reloads = 0
        self.errors = 0
        self.last_error = ""

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        key, cert = self.key.read_bytes(), self.cert.read_bytes()
        _check_pair(key, cert)
        roots = self.client_ca.read_bytes() if self.client_ca is not None else None
        if roots is not None:
            x509.load_pem_x509_certificates(roots)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=roots)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        """The configuration at start-up; errors here stop the server (nothing to fall
        back to)."""
        with self._lock:
            self._stamp = _stamp(self._paths)
            self._next_check = self._clock() + self.check_interval_s
            return self._configuration()

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None: keep the current certificate. Never raises (it runs inside gRPC)."""
        now = self._clock()
        with self._lock:
            if now < self._next_check:
                return None
            self._next_check = now + self.check_interval_s
            try:
                stamp = _stamp(self._paths)
                if stamp == self._stamp:
                    return None
                config = self._configuration()
            except (OSError, ValueError) as exc:
                # Mid-update (one file new, one old) or broken: try again next interval.
                self.errors += 1
                self.last_error = str(exc)
                log.warning("TLS files changed but cannot be used yet", extra={"error": str(exc)})
                return None
            self._stamp = stamp
            self.reloads += 1
        log.info("TLS certificate reloaded", extra={"cert": str(self.cert)})
        return config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial(),
            self.fetch,  # type: ignore[arg-type]  # the stubs miss "None: no change"
            require_client_authentication=self.client_ca is not None,
        )
