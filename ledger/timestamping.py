"""RFC 3161 timestamps for checkpoints: request, verify on receipt, re-verify later.

A :class:`TimestampClient` asks one or more TSAs in order (failover) and returns only a token
that verified on receipt; when no TSA gives one it raises :class:`TimestampUnavailable` and
returns nothing, so a caller can never record a made-up or unverified time (invariant 4).
:func:`verify_timestamp` re-checks a stored token later, without the request's nonce.

Tokens are kept as the whole DER ``TimeStampResp`` the TSA sent (the ``.tsr`` form that
``openssl ts -verify -in`` and ``evidence-verify timestamp`` read);
:attr:`TimestampToken.token_der` gives the inner ``TimeStampToken`` (a CMS ``ContentInfo``)
for formats that embed only the token.

Parsing and the signature and certificate-path check are rfc3161-client's (OpenSSL
underneath); see docs/decisions/0002-timestamping-library.md for why not rfc3161ng.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import rfc3161_client
from asn1crypto import cms
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
)

from ledger.errors import LedgerError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "TimestampClient",
    "TimestampError",
    "TimestampInvalid",
    "TimestampToken",
    "TimestampUnavailable",
    "verify_timestamp",
]

logger = logging.getLogger(__name__)

QUERY_CONTENT_TYPE: Final = "application/timestamp-query"
REPLY_CONTENT_TYPE: Final = "application/timestamp-reply"

#: A TimeStampResp with a certificate or two is a few KiB; anything far larger is refused.
MAX_RESPONSE_BYTES: Final = 1 << 20

# Digest algorithms a stored token may use, by imprint OID (NIST SHA-2 arc).
_HASH_BY_OID: Final[dict[str, str]] = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
# Digest algorithms a request may use: what rfc3161-client's request builder offers.
_REQUEST_HASHES: Final[dict[str, HashAlgorithm]] = {
    "sha256": HashAlgorithm.SHA256,
    "sha512": HashAlgorithm.SHA512,
}


class TimestampError(LedgerError):
    """Root of the timestamping errors."""


class TimestampInvalid(TimestampError):
    """A timestamp response failed verification; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid timestamp: {reason}")
        self.reason = reason


class TimestampUnavailable(TimestampError):
    """No configured TSA produced a token that verified; nothing was timestamped.

    ``failures`` holds one ``(url, reason)`` pair per TSA tried, in the order tried.
    """

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures: tuple[tuple[str, str], ...] = tuple(failures)
        detail = "; ".join(f"{url}: {reason}" for url, reason in self.failures)
        super().__init__(f"no TSA produced a valid timestamp ({detail})")


@dataclass(frozen=True)
class TimestampToken:
    """A verified RFC 3161 timestamp and the facts read from it.

    ``response_der`` is the complete DER ``TimeStampResp`` exactly as the TSA sent it; the
    other fields are derived from it (``tsa_url`` excepted) and are for display and indexing.
    Verify ``response_der`` again with :func:`verify_timestamp` rather than trusting them.
    """

    response_der: bytes = field(repr=False)
    tsa_url: str
    gen_time: datetime
    serial_number: int
    tsa_name: str
    hash_algorithm: str

    @property
    def token_der(self) -> bytes:
        """The inner ``TimeStampToken`` (CMS ``ContentInfo``), DER-encoded."""
        return bytes(rfc3161_client.decode_timestamp_response(self.response_der).time_stamp_token())


class TimestampClient:
    """Gets verified RFC 3161 timestamps from a list of TSAs, trying each in order.

    ``timeout`` is each TSA's budget in seconds, for connecting and again for the whole answer
    (so a silent or trickling TSA costs at most about twice that before the next is tried).
    ``trust_roots`` are the self-signed CA certificates a TSA certificate must chain to;
    ``intermediates`` are CA certificates that may complete a path when a TSA does not put
    them in its tokens (they are never trusted on their own).
    """

    def __init__(
        self,
        urls: Sequence[str],
        trust_roots: Sequence[x509.Certificate],
        *,
        timeout: float = 10.0,
        hash_algorithm: str = "sha256",
        intermediates: Sequence[x509.Certificate] = (),
    ) -> None:
        if isinstance(urls, str):
            raise TypeError("urls must be a sequence of URLs, not a single string")
        if not urls:
            raise ValueError("at least one TSA URL is needed")
        for url in urls:
            _check_url(url)
        if not trust_roots:
            raise ValueError("at least one trust root is needed to verify TSA certificates")
        if hash_algorithm not in _REQUEST_HASHES:
            raise ValueError(
                f"unsupported hash algorithm {hash_algorithm!r}; "
                f"use one of {', '.join(sorted(_REQUEST_HASHES))}"
            )
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._urls: tuple[str, ...] = tuple(urls)
        self._trust_roots: tuple[x509.Certificate, ...] = tuple(trust_roots)
        self._intermediates: tuple[x509.Certificate, ...] = tuple(intermediates)
        self._timeout = float(timeout)
        self._hash_algorithm = hash_algorithm

    @property
    def urls(self) -> tuple[str, ...]:
        """The TSA URLs, in the order they are tried."""
        return self._urls

    def timestamp(self, data: bytes) -> TimestampToken:
        """Timestamp ``data`` (hashed here; only the digest is sent) with the first TSA that
        answers with a token that verifies; raise :class:`TimestampUnavailable` otherwise.
        """
        if not data:
            raise ValueError("cannot timestamp empty data")
        digest = hashlib.new(self._hash_algorithm, data).digest()
        failures: list[tuple[str, str]] = []
        for url in self._urls:
            shown = _display_url(url)
            # A fresh request (and so a fresh random nonce) for every TSA asked.
            request = (
                TimestampRequestBuilder()
                .data(data)
                .hash_algorithm(_REQUEST_HASHES[self._hash_algorithm])
                .nonce(nonce=True)
                .cert_request(cert_request=True)
                .build()
            )
            nonce = request.nonce
            if nonce is None:  # the builder always sets one; never verify without it
                raise TimestampError("request builder produced a request without a nonce")
            try:
                answer = self._post(url, request.as_bytes())
                token = _verify(
                    answer,
                    digest=digest,
                    trust_roots=self._trust_roots,
                    intermediates=self._intermediates,
                    tsa_url=shown,
                    expected_hash=self._hash_algorithm,
                    nonce=nonce,
                )
            except TimestampInvalid as exc:
                reason = f"answer rejected: {exc.reason}"
            except _TransportError as exc:
                reason = str(exc)
            except Exception as exc:  # a parser or library failure: still fail over, closed
                logger.warning("unexpected error checking the answer of %s", shown, exc_info=True)
                reason = f"answer could not be checked ({type(exc).__name__})"
            else:
                logger.info(
                    "timestamped by %s at %s (serial %d)",
                    shown,
                    token.gen_time.isoformat(),
                    token.serial_number,
                )
                return token
            logger.warning("TSA %s failed: %s", shown, reason)
            failures.append((shown, reason))
        raise TimestampUnavailable(failures)

    def _post(self, url: str, body: bytes) -> bytes:
        """POST a request to one TSA and return the raw answer, or raise _TransportError."""
        deadline = time.monotonic() + self._timeout
        request = urllib.request.Request(  # noqa: S310 (scheme checked in _check_url)
            url,
            data=body,
            method="POST",
            headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                if response.status != 200:
                    raise _TransportError(f"HTTP {response.status} {response.reason}")
                chunks: list[bytes] = []
                size = 0
                while True:
                    if time.monotonic() > deadline:
                        raise _TransportError(f"timed out after {self._timeout:g}s")
                    chunk = response.read(64 * 1024)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise _TransportError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _TransportError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _TransportError(f"unreachable: {_describe_os_error(exc.reason)}") from None
        except TimeoutError:
            raise _TransportError(f"timed out after {self._timeout:g}s") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _TransportError(f"connection failed: {_describe_os_error(exc)}") from None
        return b"".join(chunks)


def verify_timestamp(
    response_der: bytes,
    data: bytes,
    trust_roots: Sequence[x509.Certificate],
    *,
    intermediates: Sequence[x509.Certificate] = (),
    tsa_url: str = "",
) -> TimestampToken:
    """Re-verify a stored ``TimeStampResp`` over ``data``; raise :class:`TimestampInvalid`.

    Checks everything :meth:`TimestampClient.timestamp` checks on receipt except the nonce,
    which only the original request knew. Certificates are checked as at the token's time.
    """
    if not trust_roots:
        raise ValueError("at least one trust root is needed to verify TSA certificates")
    response = _decode(response_der)
    _check_granted(response)
    hash_name = _imprint_hash_name(response)
    digest = hashlib.new(hash_name, data).digest()
    return _verify(
        response_der,
        digest=digest,
        trust_roots=tuple(trust_roots),
        intermediates=tuple(intermediates),
        tsa_url=tsa_url,
        expected_hash=hash_name,
        nonce=None,
    )


class _TransportError(Exception):
    """A TSA could not be asked, or did not answer over HTTP as it should."""


def _verify(
    response_der: bytes,
    *,
    digest: bytes,
    trust_roots: tuple[x509.Certificate, ...],
    intermediates: tuple[x509.Certificate, ...],
    tsa_url: str,
    expected_hash: str,
    nonce: int | None,
) -> TimestampToken:
    """Run every check on a TimeStampResp; each failed check raises TimestampInvalid."""
    response = _decode(response_der)
    _check_granted(response)
    try:
        tst_info = response.tst_info
        signed_data = response.signed_data
        signer_infos = list(signed_data.signer_infos)
        embedded = [x509.load_der_x509_certificate(c) for c in signed_data.certificates]
    except ValueError as exc:
        raise TimestampInvalid(f"malformed token: {_printable(str(exc))}") from None

    hash_name = _imprint_hash_name(response)
    if hash_name != expected_hash:
        raise TimestampInvalid(f"imprint uses {hash_name}, expected {expected_hash}")
    if not hmac.compare_digest(bytes(tst_info.message_imprint.message), digest):
        raise TimestampInvalid("message imprint does not match the data")
    if nonce is not None and tst_info.nonce != nonce:
        raise TimestampInvalid("nonce does not match the request (replayed or foreign answer)")

    if len(signer_infos) != 1:
        raise TimestampInvalid(f"expected exactly one signer, found {len(signer_infos)}")
    signer = signer_infos[0]
    tsa_cert = next(
        (
            c
            for c in embedded
            if c.issuer == signer.issuer and c.serial_number == signer.serial_number
        ),
        None,
    )
    if tsa_cert is None:
        raise TimestampInvalid("the TSA certificate is not included in the token")
    _check_tsa_eku(tsa_cert)

    # rfc3161-client hands roots and intermediates to OpenSSL as one store; OpenSSL still
    # requires every path to end at a self-signed certificate, so intermediates (and any
    # non-self-signed "root") never become trust anchors by themselves.
    verifier = VerifierBuilder(
        roots=list(trust_roots), intermediates=[c for c in intermediates if c not in trust_roots]
    ).build()
    try:
        verifier.verify(response, digest)
    except VerificationError as exc:
        raise TimestampInvalid(
            f"signature or certificate path check failed: {_openssl_reason(str(exc))}"
        ) from None

    return TimestampToken(
        response_der=bytes(response_der),
        tsa_url=tsa_url,
        gen_time=_precise_gen_time(response, tst_info.gen_time),
        serial_number=int(tst_info.serial_number),
        tsa_name=tsa_cert.subject.rfc4514_string(),
        hash_algorithm=hash_name,
    )


def _decode(response_der: bytes) -> TimeStampResponse:
    try:
        return rfc3161_client.decode_timestamp_response(bytes(response_der))
    except ValueError as exc:
        raise TimestampInvalid(f"not a DER TimeStampResp: {_printable(str(exc))}") from None


def _check_granted(response: TimeStampResponse) -> None:
    try:
        status = PKIStatus(response.status)
    except ValueError:
        raise TimestampInvalid(f"unknown PKIStatus {response.status}") from None
    if status is not PKIStatus.GRANTED:
        text = "; ".join(response.status_string)
        raise TimestampInvalid(
            f"TSA answered {status.name}" + (f" ({_printable(text)})" if text else "")
        )


def _precise_gen_time(response: TimeStampResponse, coarse: datetime) -> datetime:
    """genTime with its fraction of a second, which rfc3161-client's parser drops.

    Read with asn1crypto from the same signed bytes; the two parsers must agree to the second.
    """
    if coarse.tzinfo is None:
        coarse = coarse.replace(tzinfo=UTC)
    try:
        content = cms.ContentInfo.load(bytes(response.time_stamp_token()))["content"]
        tst_info = content["encap_content_info"]["content"].parsed
        precise = tst_info["gen_time"].native
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TimestampInvalid(f"malformed genTime: {_printable(str(exc))}") from None
    if not isinstance(precise, datetime) or precise.tzinfo is None:
        raise TimestampInvalid("genTime is not a UTC GeneralizedTime")
    precise = precise.astimezone(UTC)
    if precise.replace(microsecond=0) != coarse.astimezone(UTC).replace(microsecond=0):
        raise TimestampInvalid("genTime reads differently in two parsers")
    return precise


def _imprint_hash_name(response: TimeStampResponse) -> str:
    try:
        oid = response.tst_info.message_imprint.hash_algorithm.dotted_string
    except ValueError as exc:
        raise TimestampInvalid(f"malformed token: {_printable(str(exc))}") from None
    try:
        return _HASH_BY_OID[oid]
    except KeyError:
        raise TimestampInvalid(f"unsupported imprint hash algorithm {oid}") from None


def _check_tsa_eku(cert: x509.Certificate) -> None:
    """RFC 3161 section 2.3: the TSA certificate has a critical EKU with id-kp-timeStamping."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampInvalid("TSA certificate has no extended key usage") from None
    except ValueError as exc:
        raise TimestampInvalid(f"TSA certificate extensions unreadable: {exc}") from None
    if ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise TimestampInvalid("TSA certificate is not for time stamping (no timeStamping EKU)")
    if not eku.critical:
        raise TimestampInvalid("TSA certificate's extended key usage is not critical")


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"TSA URL must be an http:// or https:// URL with a host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("TSA URL must not carry credentials (they would end up in logs)")


def _display_url(url: str) -> str:
    """The URL without query or fragment, which may carry access keys; safe to log and store."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_OPENSSL_DATA = re.compile(r'data: "([^"]+)"')
_OPENSSL_REASON = re.compile(r'reason: "([^"]+)"')


def _openssl_reason(message: str) -> str:
    """Shorten rfc3161-client's OpenSSL error stacks to their most specific readable reason."""
    for pattern in (_OPENSSL_DATA, _OPENSSL_REASON):
        found = pattern.findall(message)
        if found:
            return _printable(found[-1])
    return _printable(message)


def _describe_os_error(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return _printable(str(reason)) or type(reason).__name__


def _printable(text: str, limit: int = 200) -> str:
    """Text from a TSA or a parser, made safe for one log line."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."
