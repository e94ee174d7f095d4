"""The court report's legal mapping: each statutory condition, paraphrased, and what meets it.

Sources (decision 0007): the Electronic Signature Law of the People's Republic of China
(《中华人民共和国电子签名法》, 2004, amended 2015 and 2019), art. 13; Regulation (EU)
No 910/2014 (eIDAS), arts. 25, 26 and 41; Hong Kong's Electronic Transactions Ordinance
(Cap. 553) ss. 6-8 as amended by Ordinance No. 14 of 2004. The conditions are paraphrased, not
quoted. The text says what the evidence pack contains; it never says a condition *is* met in
law (that is for the court), and it says plainly where the embedded default's local CA and TSA
fall short of a qualified or recognised service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CAVEATS", "DISCLAIMER", "LEGAL_MAPPING", "LegalCondition"]


@dataclass(frozen=True)
class LegalCondition:
    """One condition of one provision, in both languages, with the pack's answer to it."""

    law_en: str
    law_zh: str
    reference: str
    condition_en: str
    condition_zh: str
    met_by_en: str
    met_by_zh: str


_ESL_EN: Final = "PRC Electronic Signature Law"
_ESL_ZH: Final = "《中华人民共和国电子签名法》"
_EIDAS_EN: Final = "eIDAS, Regulation (EU) No 910/2014"
_EIDAS_ZH: Final = "欧盟 eIDAS 条例（第 910/2014 号）"
_ETO_EN: Final = "Hong Kong Electronic Transactions Ordinance (Cap. 553)"
_ETO_ZH: Final = "香港《电子交易条例》（第 553 章）"

_KEY_OWN_EN: Final = (
    "Each signer has a key pair and certificate of their own, issued by the ledger's signing "
    "CA only after the identity checks shown in section 2; the certificate names the signer "
    "and carries the ledger's stable signer id, and no key is shared between signers. "
    "Evidence: the signer certificates and chains in the pack, the identity-check events in "
    "events.jsonl, sections 2 and 4 of this report."
)
_KEY_OWN_ZH: Final = (
    "每位签署人使用其专属的密钥对和证书，由账本的签名 CA 在第 2 节所列身份核验通过后签发；"
    "证书载明签署人姓名及账本中的固定签署人编号，不同签署人之间不共用密钥。"
    "证据：证据包中的签署人证书及证书链、events.jsonl 中的身份核验事件、本报告第 2 节和第 4 节。"
)
_CONTROL_EN: Final = (
    "The private key is stored only in encrypted form (PKCS#8) and is used for a signature "
    "only after that signer passed the identity factor recorded for the signing act (time, IP, "
    "device and factor in the timeline, section 3). Limitation: with the embedded default the "
    "key is generated and held by the ledger's server on the signer's behalf, not on a device "
    "in the signer's possession; control is exercised by authenticating to the service. This "
    "is not a qualified or certified signature-creation device. Where signers sign with keys "
    "they hold themselves, the pack contains the PDFs they submitted."
)
_CONTROL_ZH: Final = (
    "私钥仅以加密形式（PKCS#8）保存，且只有在该签署人通过签署行为所记录的身份核验因素后才会被用于"
    "签名"
    "（时间、IP、设备及核验方式见第 3 节时间线）。局限：在内置默认配置下，密钥由账本服务器代签署"
    "人生成并保管，"
    "而非存放于签署人自己持有的设备中；签署人通过向服务进行身份认证来行使控制。"
    "这不是经认证的或合格的签名制作设备。签署人使用自持密钥签署时，证据包包含其提交的 PDF。"
)
_SIG_CHANGE_EN: Final = (
    "Each signature is a PAdES (CMS) signature over the exact bytes of its revision, with an "
    "RFC 3161 timestamp over the signature value; changing the signature, its certificate or "
    "its timestamp makes validation fail. The event recording each signature, with the "
    "revision's SHA-256, is a leaf of the append-only Merkle log. Evidence: the signed PDF "
    "revisions, section 4, events.jsonl and the inclusion proofs."
)
_SIG_CHANGE_ZH: Final = (
    "每个签名都是对其所在修订版本确切字节所作的 PAdES（CMS）签名，并附有对签名值所作的 RFC 3161 "
    "时间戳；"
    "对签名、其证书或时间戳的任何改动都会导致验证失败。记录每次签名的事件（含该修订版本的 SHA-256）"
    "是只增不改的 Merkle 日志中的一个叶节点。证据：已签名的 PDF 各修订版本、第 4 节、events.jsonl"
    " 及包含性证明。"
)
_DATA_CHANGE_EN: Final = (
    "A PAdES signature covers the whole document as signed; later signatures are added as "
    "incremental revisions, so each earlier revision stays byte-for-byte recoverable. The "
    "SHA-256 of the original and of every revision is recorded in events anchored in the "
    "Merkle log by signed, RFC 3161-timestamped checkpoints (section 5), and manifest.json "
    "lists the SHA-256 of every file in the pack. This report is itself signed by the ledger "
    "with a certification signature that allows no changes."
)
_DATA_CHANGE_ZH: Final = (
    "PAdES 签名覆盖签署时的整份文件；后续签名以增量修订方式追加，因此每个较早的修订版本均可逐字节"
    "还原。"
    "原件及每个修订版本的 SHA-256 记录在事件中，这些事件经已签名并带 RFC 3161 时间戳的检查点锚定"
    "于 Merkle 日志"
    "（第 5 节）；manifest.json 列出证据包中每个文件的 SHA-256。本报告本身亦由账本以不允许任何修"
    "改的认证签名签署。"
)
_IDENTIFY_EN: Final = (
    "The certificate subject names the signer (name, organisation, email or phone, signer id) "
    "and section 2 lists the identity checks the signer passed before signing, with the "
    "provider's reference where there is one."
)
_IDENTIFY_ZH: Final = (
    "证书主体载明签署人（姓名、单位、电子邮箱或手机号、签署人编号）；第 2 节列出签署人签署前通过"
    "的身份核验，"
    "以及核验服务商的参考编号（如有）。"
)

LEGAL_MAPPING: Final[tuple[LegalCondition, ...]] = (
    LegalCondition(
        _ESL_EN,
        _ESL_ZH,
        "art. 13(1) / 第十三条第（一）项",
        "When used to sign, the signature-creation data belong to the signer alone.",
        "签名时所用的电子签名制作数据专属于电子签名人。",
        _KEY_OWN_EN,
        _KEY_OWN_ZH,
    ),
    LegalCondition(
        _ESL_EN,
        _ESL_ZH,
        "art. 13(2) / 第十三条第（二）项",
        "At the time of signing, only the signer controls the signature-creation data.",
        "签署时，电子签名制作数据仅由电子签名人控制。",
        _CONTROL_EN,
        _CONTROL_ZH,
    ),
    LegalCondition(
        _ESL_EN,
        _ESL_ZH,
        "art. 13(3) / 第十三条第（三）项",
        "Any change made to the electronic signature after signing can be detected.",
        "签署后对电子签名所作的任何改动均能被发现。",
        _SIG_CHANGE_EN,
        _SIG_CHANGE_ZH,
    ),
    LegalCondition(
        _ESL_EN,
        _ESL_ZH,
        "art. 13(4) / 第十三条第（四）项",
        "Any change to the content or form of the data message after signing can be detected.",
        "签署后对数据电文内容和形式所作的任何改动均能被发现。",
        _DATA_CHANGE_EN,
        _DATA_CHANGE_ZH,
    ),
    LegalCondition(
        _EIDAS_EN,
        _EIDAS_ZH,
        "art. 26(a) / 第 26 条 (a)",
        "The signature is linked uniquely to the person who signs.",
        "签名与签署人唯一关联。",
        _KEY_OWN_EN,
        _KEY_OWN_ZH,
    ),
    LegalCondition(
        _EIDAS_EN,
        _EIDAS_ZH,
        "art. 26(b) / 第 26 条 (b)",
        "The signature makes it possible to identify the person who signs.",
        "签名能够识别签署人身份。",
        _IDENTIFY_EN,
        _IDENTIFY_ZH,
    ),
    LegalCondition(
        _EIDAS_EN,
        _EIDAS_ZH,
        "art. 26(c) / 第 26 条 (c)",
        "It is made with signature-creation data that the signer can, with a high level of "
        "confidence, use under their sole control.",
        "签名使用签署人能够以高度可信的方式在其单独控制下使用的签名制作数据生成。",
        _CONTROL_EN,
        _CONTROL_ZH,
    ),
    LegalCondition(
        _EIDAS_EN,
        _EIDAS_ZH,
        "art. 26(d) / 第 26 条 (d)",
        "It is bound to the signed data so that any later change to that data is detectable.",
        "签名与所签数据相关联，使其后对该数据的任何改动均可被发现。",
        _DATA_CHANGE_EN,
        _DATA_CHANGE_ZH,
    ),
    LegalCondition(
        _ETO_EN,
        _ETO_ZH,
        "s. 6(1) / 第 6(1) 条",
        "Where no party is (or acts for) a government entity, an electronic signature meets a "
        "legal signature requirement if (c) the signer uses a method that attaches it to, or "
        "logically associates it with, the electronic record to identify the signer and show "
        "approval of the information; (d) the method is reliable and appropriate for the "
        "purpose, in all the circumstances; and (e) the person receiving the signature "
        "consents to that method.",
        "如任何一方均非政府实体（亦非代表政府实体行事），电子签名在以下情况下符合法律对签名的要求："
        "(c) 签署人使用某种方法将电子签名附于电子记录或与之在逻辑上相关联，以识别其身份并表明其认"
        "证或认可记录中的信息；"
        "(d) 考虑到所有相关情况，该方法就该信息的用途而言属可靠及适当；及 (e) 收取签名的一方同意"
        "使用该方法。",
        "(c) Each PAdES signature is embedded in the signed PDF and made only after the signer's "
        "identity check; the signing event records the act (sections 3 and 4). (d) This pack "
        "is the evidence of the method's reliability (identity checks, certificates, "
        "timestamps, hash-chained and Merkle-logged events); whether it is reliable and "
        "appropriate is for the court. (e) The pack records the parties' use of the signing "
        "platform and the task's template; consent to the method itself must be shown from "
        "the parties' dealings or agreement if not recorded in the timeline.",
        "(c) 每个 PAdES 签名均嵌入已签名的 PDF，且仅在签署人通过身份核验后生成；签署事件记录了该"
        "行为（第 3、4 节）。"
        "(d) 本证据包即为该方法可靠性的证据（身份核验、证书、时间戳、哈希链及 Merkle 日志中的事件"
        "）；"
        "是否可靠及适当由法院判断。(e) 证据包记录了各方对签署平台及任务模板的使用；"
        "如时间线中未记录对该方法本身的同意，须另以各方往来或协议证明。",
    ),
    LegalCondition(
        _ETO_EN,
        _ETO_ZH,
        "s. 6(1A) / 第 6(1A) 条",
        "Where a government entity is a party, a digital signature meets the requirement only "
        "if it is supported by a recognized certificate and generated within its validity.",
        "如一方为政府实体，数码签署须获认可证书支持并在该证书有效期内产生，方符合要求。",
        "NOT MET by the embedded default: the local signing CA is not a recognized "
        "certification authority under the Ordinance, so its certificates are not recognized "
        "certificates. A recognized certificate must come from an external recognized CA.",
        "内置默认配置不满足此项：本地签名 CA 并非该条例下的认可核证机关，其签发的证书不是认可证书。"
        "如需认可证书，须由外部认可核证机关签发。",
    ),
    LegalCondition(
        _ETO_EN,
        _ETO_ZH,
        "s. 7 / 第 7 条",
        "Where information must be presented or kept in its original form, an electronic "
        "record will do if there is reliable assurance that the information has stayed "
        "complete and unaltered since it was first generated in final form, and it can be "
        "displayed when required.",
        "如法律要求以原本形式出示或保留资料，电子记录在以下情况下即可：能可靠地保证资料自首次以最"
        "终形式产生以来"
        "保持完整且未经更改，且能在需要时展示。",
        "The original documents and every signed revision are in the pack byte for byte, with "
        "their SHA-256 in manifest.json and in events anchored in the Merkle log by signed, "
        "timestamped checkpoints; PDFs and this PDF/A report can be displayed by any reader.",
        "原件及每个已签名修订版本均逐字节收录于证据包，其 SHA-256 载于 manifest.json 以及锚定于 M"
        "erkle 日志的事件中"
        "（检查点已签名并带时间戳）；各 PDF 及本 PDF/A 报告可由任何阅读器展示。",
    ),
    LegalCondition(
        _ETO_EN,
        _ETO_ZH,
        "s. 8 / 第 8 条",
        "Where information must be retained, an electronic record will do if it stays "
        "accessible for later reference, is kept in the format in which it was generated, "
        "sent or received (or one shown to represent it accurately), and the information "
        "identifying its origin, destination and the time of sending or receipt is kept.",
        "如法律要求保留资料，电子记录在以下情况下即可：可供日后查阅；以产生、发送或接收时的格式保留"
        "（或可证明能准确代表该资料的格式）；并保留可识别其来源、目的地及发送或接收时间的资料。",
        "The pack keeps the documents in their original format, events.jsonl with each event's "
        "canonical bytes (actor, server time, IP, device) and this report; the ZIP and its "
        "manifest can be archived and checked offline with evidence-verify.",
        "证据包以原格式保留文件，并保留 events.jsonl（含每个事件的规范字节：操作人、服务器时间、I"
        "P、设备）及本报告；"
        "ZIP 文件及其清单可归档，并可用 evidence-verify 离线核验。",
    ),
)

CAVEATS: Final[tuple[tuple[str, str], ...]] = (
    (
        "The ledger's signing CA and timestamp authority in this deployment are local services "
        "made by the ledger itself. They are not qualified trust service providers under eIDAS: "
        "the signatures are not qualified electronic signatures (art. 3(12)) and do not have "
        "the equivalence of art. 25(2); the timestamps are not qualified electronic time "
        "stamps and do not carry the presumption of art. 41(2). Under arts. 25(1) and 41(1) "
        "they may not be denied legal effect or admissibility solely for being electronic or "
        "not qualified.",
        "本部署中账本的签名 CA 和时间戳服务均为账本自行建立的本地服务，并非 eIDAS 下的合格信任服"
        "务提供者："
        "相关签名不是合格电子签名（第 3(12) 条），不具有第 25(2) 条所述的等同效力；时间戳不是合格"
        "电子时间戳，"
        "不享有第 41(2) 条的推定。根据第 25(1) 条和第 41(1) 条，不得仅因其为电子形式或非合格而否"
        "认其法律效力或证据资格。",
    ),
    (
        "The local CA is not a licensed electronic certification service provider under "
        "chapter III of the PRC Electronic Signature Law, nor a recognized certification "
        "authority under Cap. 553. Anyone checking this pack trusts it only because they are "
        "handed its root certificate (see 'How to verify').",
        "本地 CA 既不是《电子签名法》第三章所规定的依法设立的电子认证服务提供者，也不是第 553 章"
        "所规定的认可核证机关。"
        "核验本证据包者之所以信任它，仅因其获得了该 CA 的根证书（见“如何验证”）。",
    ),
    (
        "Cap. 553 ss. 5-8 do not apply to the matters in its Schedule 1 (for example wills, "
        "trusts, powers of attorney, oaths and affidavits, and certain documents relating to "
        "land); check the matter at hand.",
        "第 553 章第 5 至 8 条不适用于其附表 1 所列事项（例如遗嘱、信托、授权书、誓章及若干与土地"
        "有关的文件）；"
        "请按具体事项核查。",
    ),
)

DISCLAIMER: Final = (
    "This section maps each condition to the evidence in the pack. It is not legal advice, and "
    "whether a condition is satisfied in a particular case is for the court to decide.",
    "本节将各项法定要件与证据包中的证据逐一对应。本节不构成法律意见；个案中某项要件是否满足，由法"
    "院判断。",
)
