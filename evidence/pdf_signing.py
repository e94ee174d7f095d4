"""PAdES signing of PDFs: a B-T signature per signer, then B-LTA when the last one has signed.

Every operation appends a new incremental revision, so the bytes the ledger held before are a
prefix of the bytes after, and each revision's hash can be logged. Signatures use the
``ETSI.CAdES.detached`` subfilter with a signature timestamp from an RFC 3161 TSA (the local
TSA by default); a timestamp that does not validate against the configured TSA roots is an
error, never silently accepted (invariant 4's "never fail open", applied to signatures).
"""

# pyHanko's public API is only partly annotated.

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import text
from pyhanko.pdf_utils.font import FontEngineFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import TimestampDSSContentSettings
from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError
from pyhanko.sign.validation import add_validation_info
from pyhanko.sign.validation.generic_cms import collect_timing_info
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext

from evidence.errors import PdfSigningError
from evidence.fonts import CJK_FONT_ENV, CjkFontNotFound, cjk_font_path
from evidence.local_ca import IssuedSigner
from ledger.workflow.templates import Placement

__all__ = [
    "CJK_FONT_ENV",
    "Placement",
    "cjk_font_path",
    "finalise_ltav",
    "find_cjk_font",
    "sign_pdf",
]

_LOG = logging.getLogger(__name__)
_MD_ALGORITHM: Final = "sha256"
_TSA_TIMEOUT_SECONDS: Final = 10
_CJK_LEADING: Final = 13


def sign_pdf(
    pdf: bytes,
    signer: IssuedSigner | signers.SimpleSigner,
    *,
    placement: Placement,
    field_name: str,
    reason: str,
    location: str,
    timestamp_url: str,
    tsa_trust_roots: Iterable[x509.Certificate],
    passphrase: bytes | None = None,
) -> bytes:
    """Append a PAdES B-T signature with a visible stamp, as a new incremental revision.

    ``signer`` is a ready pyHanko signer, or an :class:`IssuedSigner` whose key is decrypted
    with ``passphrase``. The signature timestamp comes from ``timestamp_url`` and must
    validate against ``tsa_trust_roots``; otherwise :class:`PdfSigningError` is raised.
    """
    simple_signer = _resolve_signer(signer, passphrase)
    tsa_roots = list(tsa_trust_roots)
    if not tsa_roots:
        raise PdfSigningError("no TSA trust roots given: the signature timestamp cannot be checked")
    writer = _incremental_writer(pdf)
    page_count = int(writer.root["/Pages"]["/Count"])
    if placement.page > page_count:
        raise PdfSigningError(f"placement page {placement.page} is past the last ({page_count})")
    signing_cert = simple_signer.signing_cert
    assert signing_cert is not None  # SimpleSigner always has one
    font = _opentype_font_factory()
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        location=location,
        md_algorithm=_MD_ALGORITHM,
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    pdf_signer = signers.PdfSigner(
        meta,
        signer=simple_signer,
        timestamper=HTTPTimeStamper(timestamp_url, timeout=_TSA_TIMEOUT_SECONDS),
        stamp_style=_stamp_style(font),
        new_field_spec=fields.SigFieldSpec(
            sig_field_name=field_name,
            on_page=placement.page - 1,
            box=(placement.x1, placement.y1, placement.x2, placement.y2),
        ),
    )
    try:
        output = pdf_signer.sign_pdf(
            writer,
            appearance_text_params=_stamp_params(signing_cert, reason, cjk=font is not None),
        )
    except (SigningError, TimestampRequestError, OSError, ValueError) as exc:
        raise PdfSigningError(f"signing {field_name!r} failed: {exc}") from exc
    signed = bytes(output.getvalue())
    _check_signature_timestamp(signed, field_name, tsa_roots)
    return signed


def finalise_ltav(pdf: bytes, validation_context: ValidationContext, timestamp_url: str) -> bytes:
    """Make a signed PDF PAdES B-LTA: validation data for every signature, then a doc timestamp.

    ``validation_context`` must trust both the signers' roots and the TSA's root; the
    certificates (and any revocation data it holds) go into the document security store, in
    incremental revisions, before the document timestamp seals them.
    """
    current = pdf
    reader = PdfFileReader(io.BytesIO(current), strict=False)
    names = [sig.field_name for sig in reader.embedded_regular_signatures]
    if not names:
        raise PdfSigningError("the PDF has no signature to finalise")
    try:
        for name in names:
            reader = PdfFileReader(io.BytesIO(current), strict=False)
            (embedded,) = [s for s in reader.embedded_regular_signatures if s.field_name == name]
            out = add_validation_info(
                embedded, validation_context, add_vri_entry=False, output=io.BytesIO()
            )
            current = bytes(out.getvalue())
        timestamper = signers.PdfTimeStamper(
            HTTPTimeStamper(timestamp_url, timeout=_TSA_TIMEOUT_SECONDS)
        )
        out = timestamper.timestamp_pdf(
            _incremental_writer(current),
            _MD_ALGORITHM,
            validation_context=validation_context,
            dss_settings=TimestampDSSContentSettings(update_before_ts=True, include_vri=False),
        )
    except (SigningError, TimestampRequestError, OSError, ValueError) as exc:
        raise PdfSigningError(f"adding B-LTA validation data failed: {exc}") from exc
    return bytes(out.getvalue())


def find_cjk_font() -> Path | None:
    """The font stamps draw Chinese names with, or ``None`` if there is none (see ``fonts``).

    A misconfigured ``EVIDENCE_LEDGER_CJK_FONT`` raises :class:`evidence.fonts.CjkFontError`.
    """
    try:
        return cjk_font_path()
    except CjkFontNotFound:
        return None


def _resolve_signer(
    signer: IssuedSigner | signers.SimpleSigner, passphrase: bytes | None
) -> signers.SimpleSigner:
    if isinstance(signer, signers.SimpleSigner):
        return signer
    if passphrase is None:
        raise PdfSigningError("an IssuedSigner needs the passphrase to decrypt its key")
    return signer.simple_signer(passphrase)


def _incremental_writer(pdf: bytes) -> IncrementalPdfFileWriter:
    try:
        return IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    except Exception as exc:  # pyHanko raises several types on a malformed file
        raise PdfSigningError(f"not a readable PDF: {exc}") from exc


def _opentype_font_factory() -> FontEngineFactory | None:
    font = find_cjk_font()
    if font is None:
        _LOG.warning("no CJK font: stamps name non-Latin-1 signers by id (see evidence.fonts)")
        return None
    try:
        from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    except ImportError:  # pyHanko's [opentype] extra (fontTools, uharfbuzz) is missing
        _LOG.warning("pyHanko's OpenType support is not installed: stamps use Courier only")
        return None
    return GlyphAccumulatorFactory(str(font))


def _stamp_style(font: FontEngineFactory | None) -> TextStampStyle:
    # CJK glyphs fill the em box, so lines need more leading than Courier's default.
    box_style = (
        text.TextBoxStyle(font=font, leading=_CJK_LEADING)
        if font is not None
        else text.TextBoxStyle()
    )
    return TextStampStyle(
        stamp_text="Digitally signed by %(signer)s\n%(organisation)s\n%(reason)s\n%(ts)s",
        text_box_style=box_style,
        border_width=1,
        timestamp_format="%Y-%m-%d %H:%M:%S %Z",
    )


def _stamp_params(cert: asn1_x509.Certificate, reason: str, *, cjk: bool) -> dict[str, str]:
    subject = cert.subject.native
    name = str(subject.get("common_name", "unknown signer"))
    organisation = str(subject.get("organization_name", ""))
    signer_id = subject.get("serial_number")
    if not cjk:
        # The built-in Courier font draws Latin-1 only; a Chinese name would come out as
        # garbage, so the stamp names the signer by id (the certificate has the real name).
        if not _latin1(name):
            name = f"signer {signer_id}" if signer_id else "the certificate holder"
        if not _latin1(organisation):
            organisation = "(organisation in certificate)"
        if not _latin1(reason):
            reason = "(reason in signature dictionary)"
    return {"signer": name, "organisation": organisation, "reason": reason}


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _check_signature_timestamp(
    signed: bytes, field_name: str, tsa_roots: list[x509.Certificate]
) -> None:
    """Fail closed unless the new signature carries a TSA token trusted by ``tsa_roots``."""
    reader = PdfFileReader(io.BytesIO(signed), strict=False)
    embedded = [s for s in reader.embedded_regular_signatures if s.field_name == field_name]
    if len(embedded) != 1:
        raise PdfSigningError(f"signature field {field_name!r} not found after signing")
    ts_context = ValidationContext(trust_roots=[_to_asn1(c) for c in tsa_roots])
    timing = asyncio.run(
        collect_timing_info(embedded[0].signer_info, ts_context, raw_digest=_no_content_digest)
    )
    stamp = timing.get("timestamp_validity")
    if stamp is None or not (stamp.intact and stamp.valid and stamp.trusted):
        raise PdfSigningError(
            f"the signature timestamp for {field_name!r} is missing or not trusted by the "
            "configured TSA roots"
        )


def _no_content_digest(md_algorithm: str) -> bytes:
    raise PdfSigningError("unexpected content timestamp in a freshly made signature")


def _to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
