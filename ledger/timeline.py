"""A task's timeline for people: one line per event with who, what, when, where and how.

Built from the stored envelopes alone, so it shows exactly what the log holds. The
command line prints it, the HTTP API serves it and the court report lays it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Short English and Chinese names of each act, for people.
ACTIONS: dict[str, tuple[str, str]] = {
    "task.created": ("created", "创建"),
    "task.submitted": ("submitted", "提交"),
    "document.added": ("document added", "添加文件"),
    "document.viewed": ("viewed", "查看"),
    "document.read_to_end": ("read to the end", "阅读完毕"),
    "identity.verified": ("identity verified", "身份核验"),
    "step.approved": ("approved", "同意"),
    "step.rejected": ("rejected", "拒绝"),
    "step.returned": ("returned", "退回"),
    "document.signed": ("signed", "签署"),
    "task.transferred": ("transferred", "转交"),
    "signer.added": ("signer added", "加签"),
    "task.reminded": ("reminded", "催签"),
    "comment.added": ("commented", "评论"),
    "task.revoked": ("revoked", "撤销"),
    "task.expired": ("expired", "过期"),
    "task.completed": ("completed", "完成"),
}


@dataclass(frozen=True)
class TimelineEntry:
    sequence: int
    server_time: str
    actor_id: str
    actor_name: str
    organisation: str | None
    type: str
    action: str
    action_zh: str
    details: str
    ip: str | None
    device: str | None
    identity: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "server_time": self.server_time,
            "actor": {
                "id": self.actor_id,
                "name": self.actor_name,
                "organisation": self.organisation,
            },
            "type": self.type,
            "action": self.action,
            "action_zh": self.action_zh,
            "details": self.details,
            "ip": self.ip,
            "device": self.device,
            "identity": self.identity,
        }


def timeline(envelopes: Iterable[Mapping[str, Any]]) -> list[TimelineEntry]:
    """The entries of one task's stream, in sequence order."""
    return [_entry(envelope) for envelope in envelopes]


def _entry(env: Mapping[str, Any]) -> TimelineEntry:
    actor = env["actor"]
    context = env.get("context") or {}
    english, chinese = ACTIONS.get(env["type"], (env["type"], env["type"]))
    device = ", ".join(v for v in (context.get("platform"), context.get("device_id")) if v)
    factors = [
        f"{f['factor']} {f['result']}"
        + (f" ({f['provider_reference']})" if f.get("provider_reference") else "")
        for f in env.get("identity_factors") or ()
    ]
    return TimelineEntry(
        sequence=env["sequence"],
        server_time=env["server_time"],
        actor_id=actor["id"],
        actor_name=actor.get("display_name") or actor["id"],
        organisation=actor.get("organisation"),
        type=env["type"],
        action=english,
        action_zh=chinese,
        details=describe(env),
        ip=context.get("ip"),
        device=device or None,
        identity="; ".join(factors) or None,
    )


def _common_name(subject: str) -> str:
    """The CN of an RFC 4514 subject, or the whole subject if it has none."""
    for part in subject.split(","):
        if part.startswith("CN="):
            return part
    return subject


def _short(sha256: str | None) -> str:
    return f"{sha256[:12]}…" if sha256 else "-"


def describe(env: Mapping[str, Any]) -> str:
    """What the event says, in a few words (hashes shortened)."""
    data: Mapping[str, Any] = env.get("data") or {}
    kind = env["type"]
    step = data.get("step")
    at = f" at step {step}" if step else ""
    if kind == "task.created":
        template = data.get("template") or {}
        steps = " → ".join(s["key"] for s in data.get("steps", ()))
        return (
            f"{data.get('title', '')} (template {template.get('id')} v{template.get('version')};"
            f" route {steps})"
        )
    if kind == "document.added":
        return f"{data.get('file_name')} sha256 {_short(data.get('sha256'))}"
    if kind in ("document.viewed", "document.read_to_end"):
        return f"document {_short(data.get('document_sha256'))}{at}"
    if kind == "identity.verified":
        reference = data.get("provider_reference")
        return f"{data.get('factor')} by {data.get('method')}: {data.get('result')}" + (
            f", ref {reference}" if reference else ""
        )
    if kind == "step.approved":
        comment = data.get("comment")
        return f"step {step}" + (f": “{comment}”" if comment else "")
    if kind in ("step.rejected", "task.revoked"):
        return f"{at.strip()}: {data.get('reason')}".lstrip(": ")
    if kind == "step.returned":
        return f"from {step} to {data.get('to_step')}: {data.get('reason')}"
    if kind == "document.signed":
        signature = data.get("signature") or {}
        return (
            f"document {_short(data.get('document_sha256'))} → revision "
            f"{_short(data.get('revision_sha256'))} ({signature.get('level', 'signed')}, "
            f"certificate {_common_name(signature.get('subject', ''))})"
        )
    if kind == "task.transferred":
        reason = data.get("reason")
        return f"{data.get('from_user')} → {data.get('to_user')}{at}" + (
            f": {reason}" if reason else ""
        )
    if kind == "signer.added":
        return f"{data.get('user')} {data.get('position')} step {step}"
    if kind == "task.reminded":
        return f"{data.get('to_user')} ({data.get('kind')}){at}"
    if kind == "comment.added":
        return str(data.get("text", ""))
    if kind == "task.expired":
        return f"deadline {data.get('deadline')} passed{at}"
    if kind == "task.completed":
        finals = data.get("final_revisions") or ()
        return "; ".join(
            f"final revision {_short(f['revision_sha256'])} (PAdES B-LTA)" for f in finals
        )
    return ""
