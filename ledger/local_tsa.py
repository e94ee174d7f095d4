"""The embedded default's RFC 3161 time-stamping authority, clearly named as local.

On first start :meth:`LocalTimestampAuthority.load_or_create` makes a local root CA and a TSA
certificate under a directory of its own (keys mode 0600); later starts reload them, so
tokens stay verifiable against the same root. :meth:`~LocalTimestampAuthority.serve` answers
real RFC 3161 requests over HTTP, so the ledger talks to it exactly as it would to an external
TSA. Its times are only as good as this machine's clock and its certificates are trusted by
nobody who has not been handed the local root: fine for demos and development, not a
qualified trust service.

Tokens are built with pyHanko's ``DummyTimeStamper`` (which signs with RSA only, hence the
RSA TSA key); this module adds request checks, a policy OID of its own and HTTP.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from asn1crypto import algos, cms, core, tsp
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign import general
from pyhanko.sign.general import simple_cms_attribute
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from ledger.errors import ConfigurationError
from ledger.files import creation_lock, fsync_directory, write_new_file

__all__ = [
    "LOCAL_TSA_POLICY_OID",
    "ROOT_COMMON_NAME",
    "TSA_COMMON_NAME",
    "LocalTimestampAuthority",
    "LocalTsaError",
    "LocalTsaServer",
    "TsaAnswer",
]

logger = logging.getLogger(__name__)

ROOT_COMMON_NAME: Final = "Evidence Ledger Local Root CA"
TSA_COMMON_NAME: Final = "Evidence Ledger Local TSA (not a qualified trust service)"
ORGANIZATION: Final = "Evidence Ledger local"

#: TSA policy of the local TSA: a UUID-derived OID (ITU-T X.667 ``2.25`` arc), so no
#: registered policy of a real TSA is claimed.
LOCAL_TSA_POLICY_OID: Final = "2.25.310701010714084593865033054965691402972"

CERT_VALIDITY: Final = timedelta(days=3653)

ROOT_KEY_FILE: Final = "root-ca.key.pem"
ROOT_CERT_FILE: Final = "root-ca.cert.pem"
TSA_KEY_FILE: Final = "tsa.key.pem"
TSA_CERT_FILE: Final = "tsa.cert.pem"
# Order of installation when files have to be moved one by one: certificates last.
_FILES: Final = (ROOT_KEY_FILE, TSA_KEY_FILE, TSA_CERT_FILE, ROOT_CERT_FILE)
_KEY_FILES: Final = frozenset({ROOT_KEY_FILE, TSA_KEY_FILE})

QUERY_CONTENT_TYPE: Final = "application/timestamp-query"
REPLY_CONTENT_TYPE: Final = "application/timestamp-reply"
MAX_REQUEST_BYTES: Final = 16 * 1024

# Digest sizes of the imprint algorithms the local TSA accepts (asn1crypto names).
_IMPRINT_SIZES: Final[dict[str, int]] = {"sha256": 32, "sha384": 48, "sha512": 64}


class LocalTsaError(ConfigurationError):
    """The local TSA's files are missing, incomplete, unreadable or inconsistent."""


class LocalTimestampAuthority:
    """A local root CA plus TSA key and certificate, able to answer RFC 3161 requests."""

    def __init__(
        self,
        directory: Path,
        root_certificate: x509.Certificate,
        tsa_certificate: x509.Certificate,
        tsa_key: rsa.RSAPrivateKey,
    ) -> None:
        """Use :meth:`load_or_create`; this only wires already-checked parts together."""
        self._directory = directory
        self._root_certificate = root_certificate
        self._tsa_certificate = tsa_certificate
        self._tsa_key = tsa_key
        self._tsa_cert_asn1 = asn1_x509.Certificate.load(
            tsa_certificate.public_bytes(serialization.Encoding.DER)
        )
        self._tsa_key_asn1 = asn1_keys.PrivateKeyInfo.load(
            tsa_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._constants = _TokenConstants.of(self._tsa_cert_asn1)

    @classmethod
    def load_or_create(cls, directory: Path) -> LocalTimestampAuthority:
        """Reload the local TSA from ``directory``, making it there first if it is absent.

        Creation is all or nothing: files are made in a staging directory beside it and
        renamed into place, so a crash never leaves a half-made TSA behind.
        """
        directory = Path(directory)
        if all((directory / name).exists() for name in _FILES):
            return cls.load(directory)  # no lock: the directory may be read-only
        with creation_lock(directory):  # server workers start at once
            missing = [name for name in _FILES if not (directory / name).exists()]
            if not missing:
                return cls.load(directory)
            if len(missing) < len(_FILES):
                raise LocalTsaError(
                    f"{directory} holds only part of a local TSA (missing "
                    f"{', '.join(missing)}); refusing to replace it, as tokens may already "
                    "rely on its root. Restore the missing files, or move the directory "
                    "away to start a new local TSA."
                )
            _create(directory)
        authority = cls.load(directory)
        logger.info(
            "created local TSA in %s (root %s)",
            directory,
            authority.root_certificate.fingerprint(hashes.SHA256()).hex(),
        )
        return authority

    @classmethod
    def load(cls, directory: Path) -> LocalTimestampAuthority:
        """Load an existing local TSA, checking that its key and certificates belong together."""
        directory = Path(directory)
        try:
            root = x509.load_pem_x509_certificate((directory / ROOT_CERT_FILE).read_bytes())
            tsa_cert = x509.load_pem_x509_certificate((directory / TSA_CERT_FILE).read_bytes())
            key_path = directory / TSA_KEY_FILE
            _warn_if_exposed(key_path)
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise LocalTsaError(f"cannot load the local TSA from {directory}: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise LocalTsaError(f"{key_path} is not an RSA key (the local TSA signs with RSA)")
        if key.public_key().public_numbers() != _rsa_public(tsa_cert).public_numbers():
            raise LocalTsaError(f"{key_path} does not match {directory / TSA_CERT_FILE}")
        try:
            tsa_cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise LocalTsaError(
                f"{directory / TSA_CERT_FILE} was not issued by {directory / ROOT_CERT_FILE}"
            ) from exc
        return cls(directory, root, tsa_cert, key)

    @property
    def directory(self) -> Path:
        """Where the keys and certificates live."""
        return self._directory

    @property
    def root_certificate(self) -> x509.Certificate:
        """The local root CA: the trust root to verify this TSA's tokens against."""
        return self._root_certificate

    @property
    def tsa_certificate(self) -> x509.Certificate:
        """The TSA's own certificate, issued by the local root."""
        return self._tsa_certificate

    def respond(self, request_der: bytes) -> bytes:
        """Answer one DER ``TimeStampReq`` with a DER ``TimeStampResp`` (granted or rejected)."""
        return self.answer(request_der).body

    def answer(self, request_der: bytes) -> TsaAnswer:
        """Like :meth:`respond`, also saying whether the request was unreadable (HTTP 400)."""
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            request.native  # noqa: B018 (asn1crypto parses lazily: force a full parse now)
        except Exception:  # asn1crypto raises several types on junk; all mean "not DER"
            return TsaAnswer(
                HTTPStatus.BAD_REQUEST,
                _rejection("bad_data_format", "request is not a DER TimeStampReq"),
            )
        problem = _check_request(request)
        if problem is not None:
            return TsaAnswer(HTTPStatus.OK, _rejection(*problem))

        now = datetime.now(UTC)
        cert = self._tsa_certificate
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            logger.error("local TSA certificate is not valid now; refusing to timestamp")
            return TsaAnswer(
                HTTPStatus.OK,
                _rejection("time_not_available", "TSA certificate is not valid at this time"),
            )
        stamper = _LocalStamper(
            private_key=self._tsa_key,
            constants=self._constants,
            tsa_cert=self._tsa_cert_asn1,
            tsa_key=self._tsa_key_asn1,
            fixed_dt=now,
            embed_tsa_cert=bool(request["cert_req"].native),
        )
        response = stamper.request_tsa_response(request)
        return TsaAnswer(HTTPStatus.OK, response.dump())

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> LocalTsaServer:
        """Start answering RFC 3161 requests over HTTP at ``host:port`` (0: any free port)."""
        return LocalTsaServer(self, host, port)


@dataclass(frozen=True)
class TsaAnswer:
    """A DER ``TimeStampResp`` and the HTTP status to send it with."""

    http_status: HTTPStatus
    body: bytes


class LocalTsaServer:
    """A running HTTP front end of a :class:`LocalTimestampAuthority`, in a daemon thread."""

    def __init__(self, authority: LocalTimestampAuthority, host: str, port: int) -> None:
        handler = type("_BoundTsaHandler", (_TsaHandler,), {"authority": authority})
        self._httpd = _TsaHttpServer((host, port), handler)
        bound_host, bound_port = self._httpd.server_address[:2]
        if isinstance(bound_host, bytes):
            bound_host = bound_host.decode()
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown_host}:{bound_port}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"local-tsa-{bound_port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False
        logger.info("local TSA listening on %s", self._url)

    @property
    def url(self) -> str:
        """The URL to POST ``application/timestamp-query`` requests to."""
        return self._url

    def stop(self) -> None:
        """Stop accepting requests and release the port; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> LocalTsaServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _TsaHttpServer(ThreadingHTTPServer):
    """Handler threads never hold up shutdown; connection errors go to the log, not stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("local TSA connection from %s failed", client_address, exc_info=True)


class _TsaHandler(BaseHTTPRequestHandler):
    """RFC 3161 section 3.4 over HTTP: POST a query to ``/``, get a reply back."""

    authority: LocalTimestampAuthority
    server_version = "EvidenceLedgerLocalTSA/1"
    sys_version = ""
    timeout = 10  # seconds a slow client may hold a handler thread

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if self.headers.get_content_type() != QUERY_CONTENT_TYPE:
            self.send_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"expected {QUERY_CONTENT_TYPE}")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self.send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length > MAX_REQUEST_BYTES:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        answer = self.authority.answer(self.rfile.read(length))
        self.send_response(answer.http_status)
        self.send_header("Content-Type", REPLY_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(answer.body)

    def _method_not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = _method_not_allowed

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines and status codes only (never bodies), at debug level, not on stderr.
        logger.debug("%s %s", self.address_string(), format % args)


@dataclass(frozen=True)
class _TokenConstants:
    """The DER of what every token of one TSA certificate repeats, encoded once.

    asn1crypto re-encodes a structure built from Python values on every ``dump()``, and
    copies a certificate it nests under another tag: about three quarters of a token's
    CPU went on encoding these same bytes again. A value loaded from DER and left alone
    is written back as the bytes it was read from.
    """

    content_type: bytes
    signing_certificate: bytes
    signer_id: bytes
    certificates: bytes

    @classmethod
    def of(cls, tsa_cert: asn1_x509.Certificate) -> _TokenConstants:
        attribute: Any = simple_cms_attribute  # pyHanko leaves it unannotated
        return cls(
            content_type=attribute("content_type", "tst_info").dump(),
            signing_certificate=attribute(
                "signing_certificate", general.as_signing_certificate(tsa_cert)
            ).dump(),
            signer_id=cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": tsa_cert.issuer, "serial_number": tsa_cert.serial_number}
                    )
                }
            ).dump(),
            certificates=cms.CertificateSet([tsa_cert]).dump(),
        )


class _LocalStamper(DummyTimeStamper):
    """pyHanko's token builder with the local policy OID and certReq honoured.

    It signs with the key already loaded (pyHanko's own ``_sign_tst_info`` parses the
    private key again for every token, about 40 ms of CPU for an RSA key) and takes the
    parts every token repeats from :class:`_TokenConstants`.
    """

    def __init__(
        self,
        *,
        private_key: rsa.RSAPrivateKey,
        constants: _TokenConstants,
        embed_tsa_cert: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._private_key = private_key
        self._constants = constants
        self._embed_tsa_cert = embed_tsa_cert

    def _sign_tst_info(
        self, tst_info_data: bytes, md_algorithm: str, dt: datetime
    ) -> tuple[bytes, cms.CMSAttributes]:
        # As pyHanko's DummyTimeStamper._sign_tst_info, with the loaded key and constants.
        digest = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
        digest.update(tst_info_data)
        attribute: Any = simple_cms_attribute
        signed_attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute.load(self._constants.content_type),
                attribute("signing_time", cms.Time({"utc_time": core.UTCTime(dt)})),
                cms.CMSAttribute.load(self._constants.signing_certificate),
                attribute("message_digest", digest.finalize()),
            ]
        )
        signature = self._private_key.sign(
            signed_attrs.dump(),
            padding.PKCS1v15(),
            get_pyca_cryptography_hash(md_algorithm.upper()),
        )
        return signature, signed_attrs

    def _build_tst_info(self, *args: Any, **kwargs: Any) -> Any:
        tst_info = super()._build_tst_info(*args, **kwargs)
        tst_info["policy"] = tsp.ObjectIdentifier(LOCAL_TSA_POLICY_OID)
        tst_info["accuracy"] = tsp.Accuracy({"seconds": 1})
        return tst_info

    def _build_signed_data(
        self,
        tst_info_data: bytes,
        md_algorithm: str,
        signature: bytes,
        signed_attrs: cms.CMSAttributes,
    ) -> dict[str, Any]:
        # As pyHanko's DummyTimeStamper._build_signed_data, with the constants.
        digest_algorithm = algos.DigestAlgorithm({"algorithm": md_algorithm})
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier.load(self._constants.signer_id),
                "digest_algorithm": digest_algorithm,
                "signature_algorithm": algos.SignedDigestAlgorithm(
                    {"algorithm": "rsassa_pkcs1v15"}
                ),
                "signed_attrs": signed_attrs,
                "signature": signature,
            }
        )
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": cms.DigestAlgorithms((digest_algorithm,)),
            "encap_content_info": cms.EncapsulatedContentInfo(
                {
                    "content_type": cms.ContentType("tst_info"),
                    "content": cms.ParsableOctetString(tst_info_data),
                }
            ),
            "signer_infos": [signer_info],
        }
        if self._embed_tsa_cert:
            # RFC 3161 section 2.4.1: the certificates field only if certReq asked for it.
            signed_data["certificates"] = cms.CertificateSet.load(self._constants.certificates)
        return signed_data


class _TimeStampRespOut(core.Sequence):  # type: ignore[misc]
    """``TimeStampResp`` with the token optional, as RFC 3161 has it (asn1crypto requires it)."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _rejection(failure: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({failure}),
        }
    )
    return bytes(_TimeStampRespOut({"status": status}).dump())


def _check_request(request: Any) -> tuple[str, str] | None:
    """A ``(PKIFailureInfo, text)`` pair for a request the local TSA will not stamp."""
    if request["version"].native != "v1":
        return "bad_data_format", "only TimeStampReq version 1 is supported"
    imprint = request["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    size = _IMPRINT_SIZES.get(algorithm)
    if size is None:
        return "bad_alg", f"unsupported hash algorithm {algorithm}; use SHA-256/384/512"
    if len(imprint["hashed_message"].native) != size:
        return "bad_data_format", f"message imprint is not a {algorithm} digest"
    policy = request["req_policy"]
    if policy.native is not None and policy.dotted != LOCAL_TSA_POLICY_OID:
        return "unaccepted_policy", f"this TSA only issues under policy {LOCAL_TSA_POLICY_OID}"
    if request["extensions"].native:
        return "unaccepted_extensions", "request extensions are not supported"
    return None


def _create(directory: Path) -> None:
    """Make a new root and TSA in a staging directory, then move it into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".new", dir=directory.parent)
    )
    try:
        for name, content in _new_pki().items():
            write_new_file(staging / name, content, 0o600 if name in _KEY_FILES else 0o644)
        fsync_directory(staging)
        try:
            # Atomic when the target is absent or an empty directory.
            os.rename(staging, directory)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if all((directory / name).exists() for name in _FILES):
                return  # another process made it first; load theirs
            # The target holds unrelated files: move ours in one by one, certificates last.
            for name in _FILES:
                os.replace(staging / name, directory / name)
            fsync_directory(directory)
        else:
            fsync_directory(directory.parent)
    except OSError as exc:
        raise LocalTsaError(f"cannot create the local TSA in {directory}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _new_pki() -> dict[str, bytes]:
    """A fresh local root CA (ECDSA P-256) and TSA (RSA 2048), as PEM files by name."""
    now = datetime.now(UTC).replace(microsecond=0)
    not_before = now - timedelta(minutes=5)  # tolerate small clock differences
    not_after = now + CERT_VALIDITY

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(ROOT_COMMON_NAME)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )

    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(TSA_COMMON_NAME))
        .issuer_name(root_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), False
        )
        .sign(root_key, hashes.SHA256())
    )

    def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    return {
        ROOT_KEY_FILE: key_pem(root_key),
        TSA_KEY_FILE: key_pem(tsa_key),
        TSA_CERT_FILE: tsa.public_bytes(serialization.Encoding.PEM),
        ROOT_CERT_FILE: root.public_bytes(serialization.Encoding.PEM),
    }


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _rsa_public(cert: x509.Certificate) -> rsa.RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise LocalTsaError("the local TSA certificate does not hold an RSA key")
    return key


def _warn_if_exposed(key_path: Path) -> None:
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        logger.warning("%s is readable by other users (mode %o); it should be 0600", key_path, mode)
