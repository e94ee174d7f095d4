"""Signing latency: one PDF page signed PAdES B-T, visible stamp, timestamp from the local TSA.

*Ours* is ``evidence.pdf_signing.sign_pdf`` as the ledger calls it: a one-page PDF, a signer
named 陈小明 issued by the local signing CA (key decrypted once, before the clock), a visible
stamp in the bundled CJK font, a timestamp from the local TSA served over loopback HTTP, and
the check that the new signature's timestamp token is trusted.

Three peers, interleaved with ours in rotating order, show where the time goes:

* *tsa*: one RFC 3161 round trip alone, through pyHanko's ``HTTPTimeStamper`` (a fresh one,
  as ``sign_pdf`` makes). ``sign_pdf`` pays for two: pyHanko first asks for a dummy token to
  size the signature's placeholder.
* *no_ts*: pyHanko's ``PdfSigner`` with the same stamp and font, without a timestamp.
* *no_ts_latin*: the same with pyHanko's built-in Courier stamp (no font subsetting).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import text
from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.stamp import TextStampStyle

from benchmarks.common import RESULTS, median, print_table, write_result
from evidence.fonts import cjk_font_path
from evidence.local_ca import LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import Placement, sign_pdf
from evidence.testing_pdfs import make_test_pdf
from ledger.local_tsa import LocalTimestampAuthority

DEFAULT_SIGNATURES = 200
WARM_UP = 5
PASSPHRASE = b"benchmark passphrase"
PLACEMENT = Placement(page=1, x1=60, y1=60, x2=300, y2=140)
REASON = "同意签署 I agree to the supply contract"
STAMP_TEXT = "Digitally signed by %(signer)s\n%(organisation)s\n%(reason)s\n%(ts)s"
CONTENDERS = ("sign_pdf", "tsa", "no_ts", "no_ts_latin")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil
    return ordered[int(rank) - 1]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "median": round(median(samples_ms), 2),
        "p90": round(percentile(samples_ms, 0.90), 2),
        "p99": round(percentile(samples_ms, 0.99), 2),
        "max": round(max(samples_ms), 2),
        "mean": round(sum(samples_ms) / len(samples_ms), 2),
    }


def _plain_sign(
    pdf: bytes, signer: signers.SimpleSigner, font: GlyphAccumulatorFactory | None
) -> bytes:
    """pyHanko alone: the same signature and stamp as ours, without a timestamp."""
    style = text.TextBoxStyle(font=font, leading=13) if font is not None else text.TextBoxStyle()
    pdf_signer = signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name="Signature",
            reason=REASON if font is not None else "I agree to the supply contract",
            location="Hong Kong",
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
        ),
        signer=signer,
        stamp_style=TextStampStyle(
            stamp_text=STAMP_TEXT,
            text_box_style=style,
            border_width=1,
            timestamp_format="%Y-%m-%d %H:%M:%S %Z",
        ),
        new_field_spec=fields.SigFieldSpec(
            sig_field_name="Signature",
            on_page=0,
            box=(PLACEMENT.x1, PLACEMENT.y1, PLACEMENT.x2, PLACEMENT.y2),
        ),
    )
    params = {
        "signer": "陈小明" if font is not None else "signer user-0001",
        "organisation": "采购部 Procurement" if font is not None else "Procurement",
        "reason": REASON if font is not None else "I agree to the supply contract",
    }
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    return bytes(pdf_signer.sign_pdf(writer, appearance_text_params=params).getvalue())


def run(args: argparse.Namespace) -> int:
    count = args.signatures
    font_file = cjk_font_path()
    print(f"signing: {count:,} signatures of a one-page PDF each way; stamp font {font_file.name}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="signing-", dir=RESULTS))
    try:
        ca = LocalCertificateAuthority.load_or_create(directory / "ca", PASSPHRASE)
        issued = ca.issue_signer(
            SignerIdentity("user-0001", "陈小明", "采购部 Procurement", email="x@example.com")
        )
        signer = issued.simple_signer(PASSPHRASE)
        tsa = LocalTimestampAuthority.load_or_create(directory / "tsa")
        pdf = make_test_pdf("Supply contract", pages=1)
        digest = hashlib.sha256(pdf).digest()
        font = GlyphAccumulatorFactory(str(font_file))
        with tsa.serve() as server:
            url = server.url
            tsa_roots = [tsa.root_certificate]

            def ours() -> None:
                sign_pdf(
                    pdf,
                    signer,
                    placement=PLACEMENT,
                    field_name="Signature",
                    reason=REASON,
                    location="Hong Kong",
                    timestamp_url=url,
                    tsa_trust_roots=tsa_roots,
                )

            def tsa_only() -> None:
                asyncio.run(HTTPTimeStamper(url, timeout=10).async_timestamp(digest, "sha256"))

            actions: dict[str, Callable[[], Any]] = {
                "sign_pdf": ours,
                "tsa": tsa_only,
                "no_ts": lambda: _plain_sign(pdf, signer, font),
                "no_ts_latin": lambda: _plain_sign(pdf, signer, None),
            }
            for _ in range(WARM_UP):
                for action in actions.values():
                    action()
            samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
            for i in range(count):
                # Rotate who goes first, so drift on the shared VM hits every contender alike.
                order = CONTENDERS[i % len(CONTENDERS) :] + CONTENDERS[: i % len(CONTENDERS)]
                for name in order:
                    start = time.perf_counter()
                    actions[name]()
                    samples[name].append((time.perf_counter() - start) * 1000)
                if (i + 1) % 50 == 0:
                    print(f"  {i + 1:,}/{count:,}", flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    stats = {name: summary(values) for name, values in samples.items()}
    print_table(
        ["ms per call", "median", "p90", "p99", "max", "mean"],
        [[name, *stats[name].values()] for name in CONTENDERS],
    )
    path = write_result(
        "signing",
        {
            "signatures": count,
            "warm_up": WARM_UP,
            "pdf_bytes": len(pdf),
            "stamp_font": font_file.name,
            "summary_ms": stats,
            "samples_ms": {name: [round(v, 3) for v in values] for name, values in samples.items()},
        },
    )
    print(f"results: {path}")
    return 0
