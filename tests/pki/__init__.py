"""Test PKI with real RFC 3161 TSAs over HTTP on loopback, made by certomancer.

:func:`start_certomancer_tsa` generates fresh keys, loads ``certomancer.yml`` and serves
certomancer's Animator (its WSGI app) with werkzeug on 127.0.0.1 in a daemon thread. Its
tokens are made by software other than ours (certomancer's own TSA code, ECDSA keys, an
intermediate CA), which is what the timestamping tests check our client against.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import WSGIRequestHandler, make_server

CONFIG_FILE = Path(__file__).with_name("certomancer.yml")
ARCH = "ledger-test"
KEY_LABELS = ("root", "interm", "tsa", "tsa-no-eku", "tsa-noncritical-eku")


@dataclass(frozen=True)
class CertomancerTsa:
    """URLs of the running certomancer TSAs and the root their certificates chain to."""

    base_url: str
    root_certificate: x509.Certificate
    intermediate_certificate: x509.Certificate

    def url(self, service: str = "tsa") -> str:
        """POST URL of one time-stamping service from ``certomancer.yml``."""
        return f"{self.base_url}/{ARCH}/tsa/{service}"

    @property
    def no_eku_url(self) -> str:
        """A TSA whose certificate has no extended key usage extension."""
        return self.url("tsa-no-eku")

    @property
    def noncritical_eku_url(self) -> str:
        """A TSA whose timeStamping EKU is not marked critical."""
        return self.url("tsa-noncritical-eku")


def write_test_keys(key_dir: Path) -> None:
    """Generate the unencrypted ECDSA P-256 keys ``certomancer.yml`` names."""
    key_dir.mkdir(parents=True, exist_ok=True)
    for label in KEY_LABELS:
        key = ec.generate_private_key(ec.SECP256R1())
        (key_dir / f"{label}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Keep werkzeug's per-request lines out of the test output."""


@contextmanager
def start_certomancer_tsa(work_dir: Path) -> Iterator[CertomancerTsa]:
    """Serve the test PKI's TSAs over HTTP on 127.0.0.1 (a free port) until the block ends."""
    key_dir = work_dir / "certomancer-keys"
    write_test_keys(key_dir)
    config = CertomancerConfig.from_file(str(CONFIG_FILE), key_search_dir=str(key_dir))
    pki_arch = config.get_pki_arch(ArchLabel(ARCH))
    animator = Animator(
        AnimatorArchStore(config.pki_archs), with_web_ui=False, allow_time_override=False
    )
    root = x509.load_der_x509_certificate(pki_arch.get_cert(CertLabel("root")).dump())
    interm = x509.load_der_x509_certificate(pki_arch.get_cert(CertLabel("interm")).dump())

    server = make_server("127.0.0.1", 0, animator, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="certomancer-tsa",
        daemon=True,
    )
    thread.start()
    try:
        yield CertomancerTsa(
            base_url=f"http://127.0.0.1:{server.server_port}",
            root_certificate=root,
            intermediate_certificate=interm,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
