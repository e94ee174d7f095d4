"""RFC 3161 timestamp token checks, independent of the ledger's own timestamping code.

:func:`check_timestamp` takes a DER ``TimeStampResp`` (the ``.tsr`` a TSA answers) or a
bare ``TimeStampToken`` (a CMS ``ContentInfo``) and runs, in order, the steps written in
``docs/verification.md`` ("Timestamp check"). The first step that does not hold decides the
verdict; its reason names the step. Parsing is asn1crypto's, the CMS signature check is
pyHanko's ``validate_sig_integrity`` and the certificate path is pyhanko-certvalidator's,
offline (no fetching of certificates or revocation data).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.sign.general import check_ess_certid
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import validate_sig_integrity
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)

from verifier._internal.aio import run_sync
from verifier.errors import Verdict
from verifier.models import CheckResult

__all__ = ["TimestampReport", "check_timestamp"]

CHECK: Final = "timestamp"

#: Imprint and signer digest algorithms accepted, by asn1crypto name -> hashlib name.
_DIGESTS: Final[Mapping[str, str]] = {
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha3_224": "sha3_224",
    "sha3_256": "sha3_256",
    "sha3_384": "sha3_384",
    "sha3_512": "sha3_512",
}
_GRANTED: Final = frozenset({"granted", "granted_with_mods"})


@dataclass(frozen=True)
class TimestampReport:
    """The outcome of :func:`check_timestamp` and what was read from the token.

    The fields other than ``result`` are filled in as far as the token could be read; they
    are only vouched for when ``result.verdict`` is ``PASSED``.
    """

    result: CheckResult
    gen_time: datetime | None = None
    """The token's genTime (UTC, with its fraction of a second)."""
    tsa_subject: str | None = None
    """RFC 4514 subject of the certificate that signed the token."""
    serial: int | None = None
    """The token's serial number (TSTInfo serialNumber)."""
    hash_algorithm: str | None = None
    """The message imprint's hash algorithm (``sha256``, ...)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """The same facts as JSON-ready values (also in ``result.details``)."""


class _Stop(Exception):
    """One step did not hold: carries the verdict, the ETSI sub-indication and the reason."""

    def __init__(self, verdict: Verdict, sub_indication: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.sub_indication = sub_indication
        self.reason = reason


def _fail(sub_indication: str, reason: str) -> _Stop:
    return _Stop(Verdict.FAILED, sub_indication, reason)


def _indeterminate(sub_indication: str, reason: str) -> _Stop:
    return _Stop(Verdict.INDETERMINATE, sub_indication, reason)


@dataclass
class _Facts:
    """What has been read so far, for the report whatever the verdict."""

    gen_time: datetime | None = None
    tsa_subject: str | None = None
    serial: int | None = None
    hash_algorithm: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "gen_time": self.gen_time.isoformat() if self.gen_time else None,
            "tsa_subject": self.tsa_subject,
            "serial": str(self.serial) if self.serial is not None else None,
            "hash_algorithm": self.hash_algorithm,
        }
        details.update(self.extra)
        return details


def check_timestamp(
    token_der: bytes,
    *,
    data: bytes | None = None,
    digest: bytes | None = None,
    trust_roots: Sequence[x509.Certificate],
    nonce: int | None = None,
    at: datetime | None = None,
    certificates: Sequence[x509.Certificate] = (),
    crls: Sequence[bytes] = (),
    ocsps: Sequence[bytes] = (),
) -> TimestampReport:
    """Check an RFC 3161 token over ``data`` (or over a precomputed ``digest``).

    Exactly one of ``data`` and ``digest`` is given; ``digest`` is compared as is with the
    token's message imprint. ``nonce``, when given, must equal the token's. ``trust_roots``
    are the anchors a TSA certificate path must end at; with none the result is
    ``INDETERMINATE`` (never ``PASSED``). Certificates are validated as at ``at``, by
    default the token's own genTime. ``certificates`` may complete the path when the token
    does not carry them (never trusted by themselves); ``crls`` and ``ocsps`` (DER) are
    revocation data: without them revocation is not checked (soft fail).
    """
    if (data is None) == (digest is None):
        raise ValueError("give exactly one of data and digest")
    facts = _Facts()
    try:
        _run_steps(
            bytes(token_der),
            data=data,
            digest=digest,
            trust_roots=trust_roots,
            nonce=nonce,
            at=at,
            certificates=certificates,
            crls=crls,
            ocsps=ocsps,
            facts=facts,
        )
    except _Stop as stop:
        details = facts.details() | {"sub_indication": stop.sub_indication}
        result = CheckResult(CHECK, stop.verdict, stop.reason, details)
    else:
        details = facts.details()
        reason = (
            f"token of {facts.tsa_subject} at {details['gen_time']} is over this data, "
            "correctly signed, and its TSA certificate chains to a trust root"
        )
        result = CheckResult(CHECK, Verdict.PASSED, reason, details)
    return TimestampReport(
        result=result,
        gen_time=facts.gen_time,
        tsa_subject=facts.tsa_subject,
        serial=facts.serial,
        hash_algorithm=facts.hash_algorithm,
        details=details,
    )


def _run_steps(
    token_der: bytes,
    *,
    data: bytes | None,
    digest: bytes | None,
    trust_roots: Sequence[x509.Certificate],
    nonce: int | None,
    at: datetime | None,
    certificates: Sequence[x509.Certificate],
    crls: Sequence[bytes],
    ocsps: Sequence[bytes],
    facts: _Facts,
) -> None:
    # Step 1: a TimeStampResp or a TimeStampToken, strict DER-ish BER, nothing trailing.
    content_info = _parse(token_der, facts)
    # Step 2: a SignedData that encapsulates a TSTInfo, with exactly one signer.
    signed_data, tst_info, econtent = _unwrap(content_info)
    _read_tst_info(tst_info, facts)
    # Step 3: the message imprint is the data's hash under the token's algorithm.
    _check_imprint(tst_info, data=data, digest=digest, facts=facts)
    # Step 4: the nonce, when the caller knows the request's.
    token_nonce = tst_info["nonce"].native
    facts.extra["nonce"] = str(token_nonce) if token_nonce is not None else None
    if nonce is not None and token_nonce != nonce:
        raise _fail(
            "FORMAT_FAILURE",
            "nonce check: the token's nonce is not the request's (replayed or foreign answer)",
        )
    # Step 5: the signer's certificate, bound by ESSCertID/ESSCertIDv2.
    signer_info = signed_data["signer_infos"][0]
    embedded = _embedded_certificates(signed_data)
    extra = [_to_asn1(c) for c in certificates]
    tsa_cert = _find_signer_certificate(signer_info, [*embedded, *extra])
    tsa_crypto = _to_crypto(tsa_cert)
    facts.tsa_subject = tsa_crypto.subject.rfc4514_string()
    facts.extra["tsa_issuer"] = tsa_crypto.issuer.rfc4514_string()
    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs is core.VOID or not len(signed_attrs):
        raise _fail("FORMAT_FAILURE", "signature check: the SignerInfo has no signed attributes")
    _check_ess_binding(tsa_cert, signed_attrs)
    _check_tsa_name(tst_info, tsa_cert)
    # Step 6: the CMS signature over the signed attributes, and their message digest.
    _check_signature(signer_info, tsa_cert, econtent)
    # Step 7: RFC 3161 section 2.3, the TSA certificate's critical timeStamping EKU.
    _check_eku(tsa_crypto)
    # Step 8: the TSA certificate path to a trust root, as at genTime (or ``at``).
    if not trust_roots:
        raise _indeterminate(
            "NO_CERTIFICATE_CHAIN_FOUND",
            "certificate path: no trust root was given, so nothing vouches for the TSA",
        )
    assert facts.gen_time is not None
    moment = at if at is not None else facts.gen_time
    facts.extra["validation_time"] = moment.isoformat()
    _check_path(
        tsa_cert,
        others=[c for c in [*embedded, *extra] if c.dump() != tsa_cert.dump()],
        trust_roots=[_to_asn1(c) for c in trust_roots],
        moment=moment,
        at_gen_time=at is None or at == facts.gen_time,
        crls=crls,
        ocsps=ocsps,
    )


def _parse(token_der: bytes, facts: _Facts) -> cms.ContentInfo:
    """Step 1: read a TimeStampResp (status must be granted) or a bare TimeStampToken."""
    try:
        outer = core.Sequence.load(token_der, strict=True)
        first = outer[0] if len(outer) else None
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise _fail("FORMAT_FAILURE", f"format: not a DER timestamp token ({error})") from None
    try:
        if isinstance(first, core.ObjectIdentifier):
            facts.extra["form"] = "TimeStampToken"
            content_info = cms.ContentInfo.load(token_der, strict=True)
            content_info.native  # noqa: B018 (parse everything now, to fail here)
            return content_info
        facts.extra["form"] = "TimeStampResp"
        if not 1 <= len(outer) <= 2:
            raise ValueError(f"a TimeStampResp has 1 or 2 fields, this has {len(outer)}")
        # Field by field: asn1crypto's TimeStampResp does not mark the token OPTIONAL.
        status_info = tsp.PKIStatusInfo.load(outer[0].dump(), strict=True)
        status = status_info["status"].native
        texts = status_info["status_string"].native or []
        token = cms.ContentInfo.load(outer[1].dump(), strict=True) if len(outer) == 2 else None
        if token is not None:
            token.native  # noqa: B018
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise _fail("FORMAT_FAILURE", f"format: not a DER timestamp token ({error})") from None
    facts.extra["status"] = status
    if status not in _GRANTED:
        said = f" ({_printable('; '.join(texts))})" if texts else ""
        raise _fail("FORMAT_FAILURE", f"status: the TSA answered {status}{said}, not granted")
    if token is None:
        raise _fail("FORMAT_FAILURE", "status: granted, but the response carries no token")
    return token


def _unwrap(content_info: cms.ContentInfo) -> tuple[cms.SignedData, tsp.TSTInfo, bytes]:
    """Step 2: the token's SignedData, its TSTInfo and the encapsulated TSTInfo bytes."""
    if content_info["content_type"].native != "signed_data":
        raise _fail("FORMAT_FAILURE", "format: the token is not a CMS SignedData")
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise _fail("FORMAT_FAILURE", "format: the SignedData does not encapsulate a TSTInfo")
    content = encap["content"]
    if not isinstance(content, core.ParsableOctetString):
        raise _fail("FORMAT_FAILURE", "format: the TSTInfo is missing")
    econtent = bytes(content)
    try:
        tst_info = tsp.TSTInfo.load(econtent, strict=True)
        tst_info.native  # noqa: B018
    except (ValueError, TypeError, KeyError) as error:
        raise _fail("FORMAT_FAILURE", f"format: the TSTInfo cannot be read ({error})") from None
    if tst_info["version"].native != "v1":
        raise _fail("FORMAT_FAILURE", "format: TSTInfo version is not 1")
    signers = signed_data["signer_infos"]
    if len(signers) != 1:
        raise _fail("FORMAT_FAILURE", f"format: expected one SignerInfo, found {len(signers)}")
    return signed_data, tst_info, econtent


def _read_tst_info(tst_info: tsp.TSTInfo, facts: _Facts) -> None:
    gen_time = tst_info["gen_time"].native
    if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
        raise _fail("FORMAT_FAILURE", "format: genTime is not a UTC GeneralizedTime")
    facts.gen_time = gen_time.astimezone(UTC)
    facts.serial = int(tst_info["serial_number"].native)
    facts.extra["policy"] = tst_info["policy"].dotted


def _check_imprint(
    tst_info: tsp.TSTInfo, *, data: bytes | None, digest: bytes | None, facts: _Facts
) -> None:
    """Step 3: the imprint equals the data's hash, or the digest given."""
    imprint = tst_info["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    facts.hash_algorithm = algorithm
    hashed = bytes(imprint["hashed_message"].native)
    facts.extra["imprint"] = hashed.hex()
    if algorithm not in _DIGESTS:
        raise _indeterminate(
            "CRYPTO_CONSTRAINTS_FAILURE_NO_POE",
            f"imprint: hash algorithm {algorithm} is not accepted (SHA-2 or SHA-3 only)",
        )
    expected = hashlib.new(_DIGESTS[algorithm], data).digest() if data is not None else digest
    assert expected is not None
    if not hmac.compare_digest(hashed, bytes(expected)):
        raise _fail("HASH_FAILURE", f"imprint: the token's {algorithm} imprint is not this data's")


def _embedded_certificates(signed_data: cms.SignedData) -> list[asn1_x509.Certificate]:
    found = signed_data["certificates"]
    if found.native is None:
        return []
    return [choice.chosen for choice in found if choice.name == "certificate"]


def _find_signer_certificate(
    signer_info: cms.SignerInfo, candidates: Sequence[asn1_x509.Certificate]
) -> asn1_x509.Certificate:
    sid = signer_info["sid"]
    for cert in candidates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                cert.issuer == wanted["issuer"]
                and cert.serial_number == wanted["serial_number"].native
            ):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    raise _indeterminate(
        "NO_SIGNING_CERTIFICATE_FOUND",
        "signer: the certificate the SignerInfo names is neither in the token nor given",
    )


def _check_ess_binding(cert: asn1_x509.Certificate, signed_attrs: cms.CMSAttributes) -> None:
    """RFC 3161 s. 2.4.1 / RFC 5816: a signingCertificate(V2) attribute naming the cert."""
    values: list[tsp.SigningCertificate | tsp.SigningCertificateV2] = []
    for attr in signed_attrs:
        if attr["type"].native in ("signing_certificate", "signing_certificate_v2"):
            values.extend(attr["values"])
    if len(values) != 1:
        raise _fail(
            "FORMAT_FAILURE",
            f"signer: expected one ESS signingCertificate(V2) attribute, found {len(values)}",
        )
    certs = values[0]["certs"]
    if not len(certs) or not check_ess_certid(cert, certs[0]):
        raise _fail(
            "SIG_CONSTRAINTS_FAILURE",
            "signer: the ESS signingCertificate attribute does not identify the TSA certificate",
        )


def _check_tsa_name(tst_info: tsp.TSTInfo, cert: asn1_x509.Certificate) -> None:
    """RFC 3161 s. 2.4.2: a TSTInfo ``tsa`` directory name must be the certificate's subject."""
    name = tst_info["tsa"]
    if name.native is None or name.name != "directory_name":
        return
    if name.chosen != cert.subject:
        raise _fail(
            "SIG_CONSTRAINTS_FAILURE",
            "signer: the TSTInfo names another TSA than the certificate's subject",
        )


def _check_signature(
    signer_info: cms.SignerInfo, cert: asn1_x509.Certificate, econtent: bytes
) -> None:
    algorithm = signer_info["digest_algorithm"]["algorithm"].native
    if algorithm not in _DIGESTS:
        raise _indeterminate(
            "CRYPTO_CONSTRAINTS_FAILURE_NO_POE",
            f"signature: digest algorithm {algorithm} is not accepted (SHA-2 or SHA-3 only)",
        )
    actual = hashlib.new(_DIGESTS[algorithm], econtent).digest()
    try:
        intact, valid = validate_sig_integrity(signer_info, cert, "tst_info", actual)
    except SignatureValidationError as error:
        raise _fail("FORMAT_FAILURE", f"signature: {error.failure_message}") from None
    except (ValueError, TypeError, NotImplementedError) as error:
        raise _fail("FORMAT_FAILURE", f"signature: cannot be checked ({error})") from None
    if not intact:
        raise _fail("HASH_FAILURE", "signature: the message digest attribute is not the TSTInfo's")
    if not valid:
        raise _fail("SIG_CRYPTO_FAILURE", "signature: does not verify with the TSA certificate")


def _check_eku(cert: x509.Certificate) -> None:
    """RFC 3161 s. 2.3: one critical EKU extension, with id-kp-timeStamping as its purpose."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise _fail(
            "SIG_CONSTRAINTS_FAILURE", "TSA certificate: no extended key usage (RFC 3161 s. 2.3)"
        ) from None
    except ValueError as error:
        raise _fail("FORMAT_FAILURE", f"TSA certificate: extensions unreadable ({error})") from None
    purposes = list(eku.value)
    if purposes != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise _fail(
            "SIG_CONSTRAINTS_FAILURE",
            "TSA certificate: its extended key usage is not timeStamping alone (RFC 3161 s. 2.3)",
        )
    if not eku.critical:
        raise _fail(
            "SIG_CONSTRAINTS_FAILURE",
            "TSA certificate: its timeStamping extended key usage is not critical "
            "(RFC 3161 s. 2.3)",
        )


def _check_path(
    cert: asn1_x509.Certificate,
    *,
    others: list[asn1_x509.Certificate],
    trust_roots: list[asn1_x509.Certificate],
    moment: datetime,
    at_gen_time: bool,
    crls: Sequence[bytes],
    ocsps: Sequence[bytes],
) -> None:
    context = ValidationContext(
        trust_roots=trust_roots,
        other_certs=others,
        moment=moment,
        allow_fetching=False,
        revocation_mode="soft-fail",
        crls=list(crls),
        ocsps=list(ocsps),
        retroactive_revinfo=True,
    )
    validator = CertificateValidator(cert, intermediate_certs=others, validation_context=context)
    try:
        run_sync(validator.async_validate_usage(set(), {"time_stamping"}))  # type: ignore[no-untyped-call]
    except PathBuildingError:
        raise _indeterminate(
            "NO_CERTIFICATE_CHAIN_FOUND",
            "certificate path: the TSA certificate does not chain to any trust root given",
        ) from None
    except RevokedError as error:
        raise _fail("REVOKED", f"certificate path: {error}") from None
    except (ExpiredError, NotYetValidError) as error:
        if at_gen_time:
            sub = "EXPIRED" if isinstance(error, ExpiredError) else "NOT_YET_VALID"
            raise _fail(sub, f"certificate path: at the token's genTime, {error}") from None
        raise _indeterminate("OUT_OF_BOUNDS_NO_POE", f"certificate path: {error}") from None
    except InvalidCertificateError as error:
        raise _fail("SIG_CONSTRAINTS_FAILURE", f"TSA certificate: {error}") from None
    except (PathValidationError, ValidationError) as error:
        raise _indeterminate(
            "CERTIFICATE_CHAIN_GENERAL_FAILURE", f"certificate path: {error}"
        ) from None


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _to_crypto(cert: asn1_x509.Certificate) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(cert.dump())
    except ValueError as error:
        raise _fail(
            "FORMAT_FAILURE", f"signer: the TSA certificate cannot be read ({error})"
        ) from None


def _printable(text: str, limit: int = 200) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
