"""A certomancer PKI of PDF signers (``tests/pki/signers.yml``): a good, a revoked and an
expired signer certificate, a TSA, the root's CRL and OCSP responses, all in-process.

Signing time is frozen: every timestamp (content and signature timestamps) is made by
certomancer's TSA at :data:`SIGNED_AT` (2025-06-01), after the revoked certificate's
revocation (2024-01-01) and after the expired certificate's end (2023-01-01).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import ocsp as asn1_ocsp
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel, ServiceLabel
from certomancer.registry.pki_arch import PKIArchitecture
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.ades.api import CAdESSignedAttrSpec
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

CONFIG_FILE = Path(__file__).parents[1] / "pki" / "signers.yml"
ARCH = ArchLabel("signers")
KEY_LABELS = ("root", "tsa", "signer", "signer-revoked", "signer-expired", "ocsp")
SIGNED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
"""The time every test timestamp carries (after the revocation and the expiry)."""
REVOKED_SINCE = datetime(2024, 1, 1, tzinfo=UTC)
EXPIRED_AT = datetime(2023, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SignerPki:
    arch: PKIArchitecture

    def certificate(self, label: str) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.arch.get_cert(CertLabel(label)).dump())

    @property
    def root(self) -> x509.Certificate:
        return self.certificate("root")

    def signer(self, label: str) -> signers.SimpleSigner:
        return signers.SimpleSigner(
            signing_cert=self.arch.get_cert(CertLabel(label)),
            signing_key=self.arch.key_set.get_private_key(KeyLabel(label)),
            cert_registry=SimpleCertificateStore.from_certs(
                [self.arch.get_cert(CertLabel("root"))]
            ),
        )

    def sign(
        self,
        pdf: bytes,
        label: str,
        field: str = "Signer",
        *,
        content_timestamp: bool = True,
        at: datetime = SIGNED_AT,
    ) -> bytes:
        """A PAdES signature by certificate ``label`` with a signature timestamp (and, unless
        told otherwise, a content timestamp), both made by the TSA at ``at``."""
        # pyHanko's in-process TSA, with certomancer's TSA certificate and key
        timestamper = DummyTimeStamper(
            tsa_cert=self.arch.get_cert(CertLabel("tsa")),
            tsa_key=self.arch.key_set.get_private_key(KeyLabel("tsa")),
            fixed_dt=at,
        )
        meta = signers.PdfSignatureMetadata(
            field_name=field,
            subfilter=SigSeedSubFilter.PADES,
            cades_signed_attr_spec=CAdESSignedAttrSpec(timestamp_content=content_timestamp),
        )
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        out = signers.sign_pdf(writer, meta, signer=self.signer(label), timestamper=timestamper)
        return bytes(out.getvalue())

    def crl(self, at: datetime | None = None) -> bytes:
        """The root's CRL, DER, issued at ``at`` (default: now, so it is fresh)."""
        moment = at or datetime.now(UTC)
        return bytes(
            self.arch.service_registry.get_crl(ServiceLabel("root"), at_time=moment).dump()
        )

    def ocsp(self, label: str, at: datetime | None = None) -> bytes:
        """An OCSP response, DER, from the root's responder about certificate ``label``."""
        moment = at or datetime.now(UTC)
        responder = self.arch.service_registry.summon_responder(
            ServiceLabel("root"), at_time=moment
        )
        cert = self.arch.get_cert(CertLabel(label))
        issuer = self.arch.get_cert(CertLabel("root"))
        request = asn1_ocsp.OCSPRequest(
            {
                "tbs_request": {
                    "request_list": [
                        {
                            "req_cert": {
                                "hash_algorithm": {"algorithm": "sha256"},
                                "issuer_name_hash": issuer.subject.sha256,
                                "issuer_key_hash": issuer.public_key.sha256,
                                "serial_number": cert.serial_number,
                            }
                        }
                    ]
                }
            }
        )
        return bytes(responder.build_ocsp_response(request).dump())


def load_signer_pki(key_dir: Path) -> SignerPki:
    """Generate the keys ``signers.yml`` names into ``key_dir`` and load the PKI."""
    key_dir.mkdir(parents=True, exist_ok=True)
    for label in KEY_LABELS:
        # pyHanko's in-process TSA (DummyTimeStamper) signs with RSA only
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if label == "tsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        (key_dir / f"{label}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    config = CertomancerConfig.from_file(str(CONFIG_FILE), key_search_dir=str(key_dir))
    return SignerPki(config.get_pki_arch(ARCH))
