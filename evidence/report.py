"""The court report: ``report.pdf``, English and Chinese, PDF/A-3B, signed by the ledger.

:func:`build_report` draws a :class:`~evidence.report_model.ReportInput` (filled by the pack
builder) as a PDF/A-3B document with fpdf2: Noto Sans SC embedded as a TrueType subset,
an sRGB output intent, and ``manifest.json`` and ``events.jsonl`` attached as associated files.
:func:`sign_report` adds the ledger's PAdES B-T certification signature (DocMDP: no changes
allowed) as an invisible field in an incremental revision, which keeps the PDF/A-3B claim
(decision 0007). :func:`report_signer` gets the ledger's report certificate from the local CA.
"""

from __future__ import annotations

import mimetypes
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import constants as sig_constants
from pyhanko.sign.timestamps import HTTPTimeStamper, TimestampRequestError

from evidence.errors import EvidenceError, PdfSigningError
from evidence.fonts import cjk_font_path
from evidence.local_ca import IssuedSigner, LocalCertificateAuthority, SignerIdentity
from evidence.pdf_signing import (
    _check_signature_timestamp,
    _incremental_writer,
    _resolve_signer,
)
from evidence.report_font import characters_of, font_coverage, truetype_subset
from evidence.report_legal import CAVEATS, DISCLAIMER, LEGAL_MAPPING, LegalCondition
from evidence.report_model import ReportInput, TimelineRow
from evidence.report_pdf import SANS, Column, ReportPdf, Table, key_values

__all__ = [
    "REPORT_FIELD_NAME",
    "REPORT_SIGNER_ID",
    "ReportError",
    "build_report",
    "report_signer",
    "sign_report",
]

#: The signature field the ledger's report signature goes in.
REPORT_FIELD_NAME: Final = "EvidenceLedgerReport"
REPORT_SIGNER_ID: Final = "evidence-ledger-report"
REPORT_SIGNER_NAME: Final = "Evidence Ledger report signer"
REPORT_SIGNER_ORGANISATION: Final = "Evidence Ledger"
REPORT_SIGNER_EMAIL: Final = "reports@evidence-ledger.invalid"
_TSA_TIMEOUT_SECONDS: Final = 10

#: How each attachment relates to the report (ISO 32000-2 AFRelationship); others: Supplement.
_AF_RELATIONSHIP: Final = {"manifest.json": "Data", "events.jsonl": "Source"}
_MIME_TYPES: Final = {".json": "application/json", ".jsonl": "application/x-ndjson"}

_STATUS_ZH: Final = {
    "pending": "待处理",
    "in_progress": "进行中",
    "partially_signed": "部分签署",
    "completed": "已完成",
    "approved": "已通过",
    "rejected": "已拒绝",
    "revoked": "已撤销",
    "expired": "已过期",
}
_ROLE_ZH: Final = {
    "initiator": "发起人",
    "approver": "审批人",
    "signer": "签署人",
    "viewer": "查看人",
    "cc": "抄送人",
}
_VERDICT: Final = {
    "TOTAL_PASSED": ("PASSED", "通过", (220, 240, 224)),
    "TOTAL_FAILED": ("FAILED", "未通过", (248, 220, 220)),
    "INDETERMINATE": ("INDETERMINATE", "无法确定", (252, 240, 210)),
}


class ReportError(EvidenceError):
    """The report cannot be drawn from the input given (bad time zone, missing font, …)."""


# -- signer --------------------------------------------------------------------------------


_MAX_COMMON_NAME = 64


def report_signer(ca: LocalCertificateAuthority, origin: str) -> IssuedSigner:
    """The ledger's report-signing certificate from the local CA (issued once, then reused).

    The certificate's common name carries the log ``origin`` when it fits (64 characters), so
    reports of two ledgers that share a CA are told apart; the subject's serialNumber is
    ``evidence-ledger-report``.
    """
    if not origin.strip():
        raise ValueError("the log origin must not be empty")
    named = f"{REPORT_SIGNER_NAME} ({origin.strip()})"
    identity = SignerIdentity(
        signer_id=REPORT_SIGNER_ID,
        # X.520 limits a commonName to 64 characters; a long origin is left out of it.
        name=named if len(named) <= _MAX_COMMON_NAME else REPORT_SIGNER_NAME,
        organisation=REPORT_SIGNER_ORGANISATION,
        email=REPORT_SIGNER_EMAIL,
    )
    return ca.issue_signer(identity)


# -- signing -------------------------------------------------------------------------------


def sign_report(
    pdf: bytes,
    signer: IssuedSigner | signers.SimpleSigner,
    *,
    timestamp_url: str,
    tsa_trust_roots: Iterable[x509.Certificate],
    passphrase: bytes | None = None,
) -> bytes:
    """Certify ``pdf`` with a PAdES B-T signature that allows no later changes (DocMDP 1).

    The signature field is invisible (a zero-size, printable, locked widget on page 1, which
    PDF/A-2/3 exempts from needing an appearance) and goes in an incremental revision, so the
    unsigned report is a byte prefix of the signed one and its PDF/A-3B claim and XMP stay.
    The timestamp must validate against ``tsa_trust_roots``, otherwise
    :class:`PdfSigningError`.
    """
    simple_signer = _resolve_signer(signer, passphrase)
    tsa_roots = list(tsa_trust_roots)
    if not tsa_roots:
        raise PdfSigningError("no TSA trust roots given: the signature timestamp cannot be checked")
    writer = _incremental_writer(pdf)
    meta = signers.PdfSignatureMetadata(
        field_name=REPORT_FIELD_NAME,
        reason="Evidence report issued by the ledger / 账本出具的证据报告",
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    pdf_signer = _Pdf17Signer(
        meta,
        signer=simple_signer,
        timestamper=HTTPTimeStamper(timestamp_url, timeout=_TSA_TIMEOUT_SECONDS),
        new_field_spec=fields.SigFieldSpec(sig_field_name=REPORT_FIELD_NAME, on_page=0),
    )
    try:
        output = pdf_signer.sign_pdf(writer)
    except (SigningError, TimestampRequestError, OSError, ValueError) as exc:
        raise PdfSigningError(f"signing the report failed: {exc}") from exc
    signed = bytes(output.getvalue())
    _check_signature_timestamp(signed, REPORT_FIELD_NAME, tsa_roots)
    return signed


class _Pdf17Signer(signers.PdfSigner):
    """A PdfSigner that keeps the document at PDF 1.7, the base of PDF/A-3.

    For an ECDSA P-256 key pyHanko registers the ISO/TS 32002 extension, whose base version
    2.0 makes it write ``/Version /2.0`` into the catalog; a PDF/A-3 file must stay PDF 1.7.
    Only the ESIC extension (PAdES on PDF 1.7) is declared; the signature itself is the same.
    """

    def register_extensions(self, pdf_out: Any, *, md_algorithm: str) -> None:
        pdf_out.ensure_output_version(version=(1, 7))
        pdf_out.register_extension(sig_constants.ESIC_EXTENSION_1)


# -- building ------------------------------------------------------------------------------


def build_report(data: ReportInput, attachments: Mapping[str, bytes]) -> bytes:
    """Draw ``data`` as report.pdf (PDF/A-3B) with ``attachments`` embedded as associated files."""
    zone = _zone(data.timezone)
    source = cjk_font_path()
    characters = characters_of(data, list(attachments)) | _static_characters()
    with tempfile.TemporaryDirectory(prefix="evidence-report-") as tmp:
        for _attempt in range(2):
            font = truetype_subset(source, characters, Path(tmp) / "ReportSans.ttf")
            pdf = _draw(data, attachments, zone, font)
            # A character the subset lacks but the font has (a label built at run time that
            # is not in this package's source): draw again with it; never happens twice.
            missing = _missing_characters(pdf) & font_coverage(source)
            if not missing:
                break
            characters |= missing
        return bytes(pdf.output())


def _draw(
    data: ReportInput, attachments: Mapping[str, bytes], zone: tzinfo, font: Path
) -> ReportPdf:
    pdf = ReportPdf(
        font=font,
        header_left=f"Evidence report 证据报告 · Task 任务 {data.task_id}",
        header_right=(
            f"Checkpoint 检查点 {data.anchoring.log_origin} · size {data.anchoring.checkpoint_size}"
            f" · root {data.anchoring.checkpoint_root}"
        ),
        footer=f"Generated 生成于 {_utc(data.generated_at)}",
    )
    created = _aware(data.generated_at)
    pdf.set_creation_date(created)
    pdf.set_title(f"Evidence report {data.task_id}: {data.title}")
    pdf.set_subject("Evidence report / 证据报告")
    pdf.set_author("Evidence Ledger")
    pdf.set_creator("evidence-ledger")
    pdf.set_lang("en")
    pdf.set_keywords(["evidence", data.task_id, data.anchoring.log_origin])

    _summary(pdf, data, zone)
    _parties(pdf, data, zone)
    _timeline(pdf, data, zone)
    _signatures(pdf, data, zone)
    _anchoring(pdf, data, zone)
    _legal(pdf)
    _how_to_verify(pdf, data, attachments)

    for name, content in attachments.items():
        pdf.embed_file(
            bytes=content,
            basename=name,
            modification_date=created,
            mime_type=_mime_type(name),
            associated_file_relationship=_AF_RELATIONSHIP.get(name, "Supplement"),
            desc=f"{name} of the evidence pack for task {data.task_id}",
            compress=True,
        )
    return pdf


@lru_cache(maxsize=1)
def _static_characters() -> frozenset[str]:
    """Every character of the labels and legal text: this package's report sources."""
    here = Path(__file__).parent
    return frozenset(
        "".join(
            (here / name).read_text(encoding="utf-8")
            for name in ("report.py", "report_legal.py", "report_pdf.py")
        )
    )


def _missing_characters(pdf: ReportPdf) -> set[str]:
    missing: set[str] = set()
    for font in pdf.fonts.values():
        missing.update(chr(c) for c in getattr(font, "missing_glyphs", ()))
    return missing


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone {name!r}") from exc


def _mime_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _MIME_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return "—"
    local = _aware(moment).astimezone(zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({offset[:3]}:{offset[3:]})"


def _both(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return "—"
    return f"{_utc(moment)}\n{_local(moment, zone)}"


def _status(status: str) -> str:
    zh = _STATUS_ZH.get(status.lower())
    return f"{status} {zh}" if zh else status


def _roles(roles: Iterable[str]) -> str:
    return ", ".join(f"{r} {_ROLE_ZH[r.lower()]}" if r.lower() in _ROLE_ZH else r for r in roles)


def _size(size: int) -> str:
    return f"{size:,} bytes 字节"


def _summary(pdf: ReportPdf, data: ReportInput, zone: tzinfo) -> None:
    pdf.add_page()
    pdf.start_section("Evidence report 证据报告")
    pdf.set_font(SANS, size=19)
    pdf.text(pdf.l_margin, pdf.get_y() + 7, "Evidence report  电子证据报告")
    pdf.set_y(pdf.get_y() + 11)
    pdf.paragraph(f"{data.title}", size=11)
    pdf.heading("Summary", "摘要", level=1)
    key_values(
        pdf,
        [
            ("Task 任务", data.task_id),
            ("Title 标题", data.title),
            ("Template 模板", data.template),
            ("Outcome 结果", _status(data.status)),
            ("Initiator 发起人", data.initiator),
            ("Created 创建时间", _both(data.created_at, zone)),
            ("Finished 完成时间", _both(data.finished_at, zone)),
            ("Time zone 时区", data.timezone),
            ("Events 事件数", f"{len(data.timeline):,}"),
            ("Report generated 报告生成时间", _both(data.generated_at, zone)),
        ],
    )
    pdf.heading("Parties", "当事人", level=1)
    key_values(
        pdf,
        [
            (_roles(p.roles), p.name + (f" · {p.organisation}" if p.organisation else ""))
            for p in data.parties
        ],
    )
    pdf.heading("Documents", "文件", level=1)
    key_values(
        pdf,
        [
            (
                d.file_name,
                f"SHA-256 {d.sha256} · {_size(d.size)}"
                + (f"\nFinal signed 最终签署版 SHA-256 {d.revisions[-1]}" if d.revisions else "")
                + f"\nSigned revisions 签署修订版本: {len(d.revisions)}",
            )
            for d in data.documents
        ],
    )
    a = data.anchoring
    pdf.heading("Log position", "日志位置", level=1)
    key_values(
        pdf,
        [
            ("Log 日志", a.log_origin),
            ("Leaves 叶节点", f"{a.first_leaf:,} – {a.last_leaf:,}"),
            ("Checkpoint 检查点", f"size 大小 {a.checkpoint_size:,} · root 根 {a.checkpoint_root}"),
            ("Checkpoint time 检查点时间", _timestamp_line(a.tsa_time, a.tsa_name, zone)),
        ],
    )
    english, chinese, fill = _VERDICT.get(
        data.verdict, (data.verdict, data.verdict, (235, 235, 235))
    )
    pdf.heading("Verification at export", "导出时验证结论", level=1)
    details = "\n".join(f"• {d}" for d in data.verdict_details)
    pdf.boxed(
        f"{english}  {chinese}  ({data.verdict})" + (f"\n{details}" if details else ""),
        fill=fill,
        size=9.5,
    )


def _timestamp_line(moment: datetime | None, tsa: str | None, zone: tzinfo) -> str:
    if moment is None:
        return "not timestamped 未加时间戳"
    return _both(moment, zone) + (f"\nTSA 时间戳机构: {tsa}" if tsa else "")


def _parties(pdf: ReportPdf, data: ReportInput, zone: tzinfo) -> None:
    pdf.add_page()
    pdf.heading("Parties and identity evidence", "当事人及身份核验证据")
    for party in data.parties:
        org = f" · {party.organisation}" if party.organisation else ""
        pdf.heading(f"{party.name}{org}", f"({_roles(party.roles)})", level=1)
        pdf.paragraph(f"User id 用户编号: {party.user_id}", size=8, color=(90, 90, 90))
        if not party.identity_checks:
            pdf.paragraph("No identity check recorded. 未记录身份核验。", size=8.5)
            continue
        Table(
            pdf,
            [
                Column("Factor 核验因素", 1.1),
                Column("Method 方式", 1.2),
                Column("Result 结果", 0.7),
                Column("When 时间 (UTC / local 本地)", 1.6),
                Column("Provider reference 服务商参考号", 1.4),
            ],
        ).draw(
            (
                check.factor,
                check.method,
                check.result,
                _both(check.at, zone),
                check.provider_reference or "—",
            )
            for check in party.identity_checks
        )


def _timeline_row(row: TimelineRow, zone: tzinfo) -> tuple[str, ...]:
    actor = row.actor_name + (f"\n{row.organisation}" if row.organisation else "")
    action = f"{row.action_en} / {row.action_zh}" + (f"\n{row.details}" if row.details else "")
    ips = f"{row.ip or '—'}\n{row.connection_ip or '—'}"
    return (
        f"{row.leaf_index}\n#{row.sequence}",
        f"{_utc(row.server_time)}\n{_local(row.server_time, zone)}",
        actor,
        action,
        ips,
        row.device or "—",
        row.identity or "—",
    )


def _timeline(pdf: ReportPdf, data: ReportInput, zone: tzinfo) -> None:
    pdf.add_page(orientation="L")
    pdf.heading("Timeline", "时间线")
    pdf.paragraph(
        f"Every event of the task in log order ({len(data.timeline):,} events). Times are the "
        f"ledger's server time in UTC and in the tenant's time zone ({data.timezone}). "
        "IP is the address the app reported for the person; connection IP is the address the "
        "request reached the ledger from. "
        f"按日志顺序列出本任务的全部事件（共 {len(data.timeline):,} 条）。时间为账本服务器时间，"
        f"分别以 UTC 及租户时区（{data.timezone}）显示。IP 为应用上报的用户地址；连接 IP 为请求到"
        "达账本时的来源地址。",
        size=8,
    )
    Table(
        pdf,
        [
            Column("Leaf 叶节点\nSeq 序号", 0.55),
            Column("Time 时间\nUTC / local 本地", 1.45),
            Column("Actor 操作人", 1.1),
            Column("Action 操作 / details 详情", 2.5),
            Column("IP / connection IP\nIP / 连接 IP", 1.05),
            Column("Device 设备", 1.3),
            Column("Identity 身份核验", 1.05),
        ],
        size=7,
        pad=0.8,
        max_lines=12,
    ).draw(_timeline_row(row, zone) for row in data.timeline)


def _signatures(pdf: ReportPdf, data: ReportInput, zone: tzinfo) -> None:
    pdf.add_page(orientation="P")
    pdf.heading("Signatures", "签名")
    if not data.signatures:
        pdf.paragraph("No signature in this task. 本任务没有签名。")
    for number, sig in enumerate(data.signatures, start=1):
        pdf.heading(f"{number}. {sig.field_name}", f"({sig.document_file_name})", level=1)
        validity = f"{_utc(sig.not_before)} – {_utc(sig.not_after)}"
        key_values(
            pdf,
            [
                ("Document 文件", sig.document_file_name),
                ("Revision SHA-256 修订版本", sig.revision_sha256),
                ("Signer certificate 签署人证书", sig.signer_subject),
                ("Issuer 签发者", sig.issuer),
                ("Serial 序列号", sig.serial),
                ("Valid 有效期", validity),
                ("Signing time 签署时间", _both(sig.signing_time, zone)),
                ("TSA time 时间戳时间", _both(sig.tsa_time, zone)),
                ("Level 级别", sig.level),
            ],
        )


def _anchoring(pdf: ReportPdf, data: ReportInput, zone: tzinfo) -> None:
    a = data.anchoring
    pdf.heading("Anchoring in the log", "日志锚定")
    pdf.paragraph(
        "Each event is a leaf of the ledger's append-only RFC 9162 Merkle log. The pack holds "
        "an inclusion proof for every event against the checkpoint below, which is signed with "
        "the ledger key and timestamped (RFC 3161), and consistency proofs to later checkpoints. "
        "每个事件都是账本只增不改的 RFC 9162 Merkle 日志中的一个叶节点。证据包为每个事件提供对下"
        "述检查点的包含性证明；"
        "该检查点经账本密钥签名并加有 RFC 3161 时间戳；证据包另附至后续检查点的一致性证明。",
        size=8,
    )
    later = ", ".join(f"{size:,}" for size in a.later_checkpoints) or "none 无"
    key_values(
        pdf,
        [
            ("Log origin 日志标识", a.log_origin),
            ("Ledger key 账本公钥", a.ledger_key),
            ("Leaf indices 叶节点序号", f"{a.first_leaf:,} – {a.last_leaf:,} (0-based 从 0 起)"),
            ("Checkpoint size 检查点大小", f"{a.checkpoint_size:,}"),
            ("Root hash 根哈希", a.checkpoint_root),
            ("Checkpoint TSA time 时间戳", _timestamp_line(a.tsa_time, a.tsa_name, zone)),
            ("Consistency to 一致性证明至", later),
            ("Checkpoint note 检查点签名记录", a.checkpoint_note.rstrip("\n")),
        ],
    )


def _legal(pdf: ReportPdf) -> None:
    pdf.add_page(orientation="P")
    pdf.heading("Legal requirements and the evidence", "法定要件与证据对照")
    pdf.paragraph(f"{DISCLAIMER[0]}\n{DISCLAIMER[1]}", size=8)
    laws: dict[tuple[str, str], list[LegalCondition]] = {}
    for condition in LEGAL_MAPPING:
        laws.setdefault((condition.law_en, condition.law_zh), []).append(condition)
    for (law_en, law_zh), conditions in laws.items():
        pdf.heading(law_en, law_zh, level=1)
        Table(
            pdf,
            [
                Column("Provision 条款", 0.55),
                Column("Condition, and how the pack meets it", 2.2),
                Column("要件，及本证据包如何满足", 2.2),
            ],
            size=7.5,
            max_lines=60,
        ).draw(
            (
                c.reference,
                f"{c.condition_en}\n→ {c.met_by_en}",
                f"{c.condition_zh}\n→ {c.met_by_zh}",
            )
            for c in conditions
        )
    pdf.heading("Limits of this deployment", "本部署的局限", level=1)
    for english, chinese in CAVEATS:
        pdf.paragraph(f"{english}\n{chinese}", size=8)


def _how_to_verify(pdf: ReportPdf, data: ReportInput, attachments: Mapping[str, bytes]) -> None:
    pdf.heading("How to verify", "如何验证")
    pdf.paragraph(
        "Run the independent verifier on the evidence pack. It trusts nothing the ledger says: "
        "it recomputes every hash, checks every proof, signature, timestamp and certificate "
        "path, and exits 0 when all checks pass, 1 when one fails and 2 when a result cannot be "
        "determined (for example, no trust anchor given). "
        "请对证据包运行独立验证工具。该工具不信任账本的任何陈述：它重新计算每个哈希，核验每个证明"
        "、签名、时间戳及证书路径；"
        "全部通过时退出码为 0，任何一项失败时为 1，无法确定时（例如未提供信任锚）为 2。",
        size=8.5,
    )
    pdf.boxed(data.verify_command, fill=(238, 238, 238), size=8.5)
    pdf.heading("Trust anchors", "信任锚", level=1)
    for anchor in data.trust_anchors:
        pdf.paragraph(f"• {anchor}", size=8.5)
    if attachments:
        pdf.heading("Files attached to this PDF", "本 PDF 的附件", level=1)
        pdf.paragraph(
            "Open the attachments panel of a PDF reader to extract them; "
            "可在 PDF 阅读器的附件面板中提取。 " + " · ".join(sorted(attachments)),
            size=8.5,
        )
    if data.pack_files:
        pdf.heading("Files in the pack", "证据包中的文件", level=1)
        Table(pdf, [Column("Path 路径", 1.2), Column("SHA-256", 1.6)], size=7).draw(data.pack_files)
