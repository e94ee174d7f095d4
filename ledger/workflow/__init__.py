"""The approval and signing workflow domain: templates, routing, rules and task state.

Pure Python with no storage: :func:`route` turns a template into a task's concrete steps,
:func:`decide` turns a command into events (or a specific refusal) and :func:`fold` /
:func:`apply` rebuild a task's state from its stored events.
"""

from __future__ import annotations

from ledger.workflow.commands import (
    AddDocument,
    AddSigner,
    Approve,
    Command,
    Comment,
    Create,
    Expire,
    ReadToEnd,
    Reject,
    Remind,
    Return,
    Revoke,
    Sign,
    Submit,
    Transfer,
    VerifyIdentity,
    View,
)
from ledger.workflow.decide import (
    PDF_MEDIA_TYPE,
    SYSTEM_ACTOR,
    EventDraftData,
    decide,
    preview_envelope,
)
from ledger.workflow.errors import WorkflowError
from ledger.workflow.routing import (
    AD_HOC_TEMPLATE,
    Directory,
    DirectoryUser,
    Route,
    RouteStep,
    ad_hoc_route,
    route,
)
from ledger.workflow.state import (
    DocumentState,
    ParticipantState,
    StepState,
    TaskState,
    Verification,
    apply,
    fold,
)
from ledger.workflow.templates import (
    Condition,
    ParticipantRef,
    Placement,
    ReminderPolicy,
    StepSpec,
    Template,
)

__all__ = [
    "AD_HOC_TEMPLATE",
    "PDF_MEDIA_TYPE",
    "SYSTEM_ACTOR",
    "AddDocument",
    "AddSigner",
    "Approve",
    "Command",
    "Comment",
    "Condition",
    "Create",
    "Directory",
    "DirectoryUser",
    "DocumentState",
    "EventDraftData",
    "Expire",
    "ParticipantRef",
    "ParticipantState",
    "Placement",
    "ReadToEnd",
    "Reject",
    "Remind",
    "ReminderPolicy",
    "Return",
    "Revoke",
    "Route",
    "RouteStep",
    "Sign",
    "StepSpec",
    "StepState",
    "Submit",
    "TaskState",
    "Template",
    "Transfer",
    "Verification",
    "VerifyIdentity",
    "View",
    "WorkflowError",
    "ad_hoc_route",
    "apply",
    "decide",
    "fold",
    "preview_envelope",
    "route",
]
