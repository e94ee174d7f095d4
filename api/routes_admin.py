"""HTTP routes for a tenant's administrators: API keys, app keys, templates, the directory.

Tenants themselves are made by the operator (``evidence-ledger tenant create``), who also
makes each tenant's first admin key. Everything here acts only inside the caller's tenant.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import jws
from api.problems import Problem
from api.security import (
    MAX_TEMPLATE_VERSION,
    ApiSettings,
    idempotent,
    principal,
    raw_body,
    require,
)
from api.tenancy import Principal, TenantStore
from ledger.workflow import Directory, Template
from ledger.workflow.errors import TemplateError

router = APIRouter(tags=["administration"])
Caller = Annotated[Principal, Depends(principal)]

Role = Literal["app", "legal", "auditor", "compliance", "admin"]


class NewApiKey(BaseModel):
    role: Role
    label: str | None = Field(default=None, max_length=200)


class CreatedApiKey(BaseModel):
    key_id: str
    role: Role
    api_key: str = Field(description="Shown once: only its hash is kept.")


class NewAppKey(BaseModel):
    app_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    kid: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    public_key: str = Field(
        description="The Ed25519 public key: 32 bytes, base64url (as a JWK's x) or base64."
    )


class AppKeyOut(BaseModel):
    app_id: str
    kid: str
    public_key: str
    revoked: bool


def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.runtime.settings
    return settings


def _tenants(request: Request) -> TenantStore:
    tenants: TenantStore = request.app.state.tenants
    return tenants


def _decode_key(text: str) -> bytes:
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            if not jws.usable_public_key(raw):
                raise Problem(
                    422,
                    "invalid-public-key",
                    "public_key is not an Ed25519 key a signer can hold: it must be a "
                    "canonical point of the curve's prime-order subgroup",
                )
            return raw
    raise Problem(422, "invalid-public-key", "public_key must be 32 bytes of Ed25519, base64")


@router.post("/api-keys", status_code=201, response_model=CreatedApiKey)
async def create_api_key(request: Request, body: NewApiKey, who: Caller) -> Response:
    """Make an API key for the caller's tenant (admin)."""
    require(who, "admin")
    raw = await raw_body(request, _settings(request))

    def run() -> tuple[int, Any]:
        key = _tenants(request).create_api_key(who.tenant_id, body.role, body.label)
        return 201, {"key_id": key.split("_")[1], "role": body.role, "api_key": key}

    return await run_in_threadpool(idempotent, request, who, raw, run)


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(request: Request, key_id: str, who: Caller) -> Response:
    """Revoke one of the tenant's API keys (admin); it stops working at once."""
    require(who, "admin")
    done = await run_in_threadpool(_tenants(request).revoke_api_key, who.tenant_id, key_id)
    if not done:
        raise Problem(404, "api-key-not-found", f"the tenant has no live API key {key_id!r}")
    return Response(status_code=204)


@router.post("/app-keys", status_code=201, response_model=AppKeyOut)
async def register_app_key(request: Request, body: NewAppKey, who: Caller) -> Response:
    """Register an app's Ed25519 public key under a key id (admin). Several may be live."""
    require(who, "admin")
    raw = await raw_body(request, _settings(request))
    public_key = _decode_key(body.public_key)

    def run() -> tuple[int, Any]:
        existing = _tenants(request).app_key(who.tenant_id, body.kid)
        if existing is not None and existing.revoked:
            # A revoked key stays revoked: registering it again must not look like a revival.
            raise Problem(
                409,
                "app-key-revoked",
                f"key id {body.kid!r} was revoked; register the new key under a new key id",
            )
        if not _tenants(request).register_app_key(who.tenant_id, body.app_id, body.kid, public_key):
            raise Problem(409, "app-key-exists", f"key id {body.kid!r} is already registered")
        return 201, _app_key_out(body.app_id, body.kid, public_key, False)

    return await run_in_threadpool(idempotent, request, who, raw, run)


def _app_key_out(app_id: str, kid: str, public_key: bytes, revoked: bool) -> dict[str, Any]:
    x = base64.urlsafe_b64encode(public_key).rstrip(b"=").decode()
    return {"app_id": app_id, "kid": kid, "public_key": x, "revoked": revoked}


@router.get("/app-keys", response_model=list[AppKeyOut])
async def list_app_keys(request: Request, who: Caller) -> list[dict[str, Any]]:
    """The tenant's app keys, live and revoked (admin, app)."""
    require(who, "admin", "app")
    keys = await run_in_threadpool(_tenants(request).app_keys, who.tenant_id)
    return [_app_key_out(k.app_id, k.kid, k.public_key, k.revoked) for k in keys]


@router.delete("/app-keys/{kid}", status_code=204)
async def revoke_app_key(request: Request, kid: str, who: Caller) -> Response:
    """Revoke an app key (admin): events signed with it are refused from now on."""
    require(who, "admin")
    if not await run_in_threadpool(_tenants(request).revoke_app_key, who.tenant_id, kid):
        raise Problem(404, "app-key-not-found", f"the tenant has no live app key {kid!r}")
    return Response(status_code=204)


@router.post("/templates", status_code=201)
async def put_template(request: Request, who: Caller) -> Response:
    """Store a template version (admin). Versions never change: a new one is a new number."""
    require(who, "admin")
    raw = await raw_body(request, _settings(request))
    from api.security import parse_json

    data = parse_json(raw)

    def run() -> tuple[int, Any]:
        try:
            template = Template.from_json(data)
        except TemplateError as exc:
            raise Problem(422, "invalid-template", str(exc)) from None
        if template.version > MAX_TEMPLATE_VERSION:
            raise Problem(
                422, "invalid-template", f"version: must be at most {MAX_TEMPLATE_VERSION}"
            )
        if not _tenants(request).put_template(who.tenant_id, template):
            raise Problem(
                409,
                "template-version-exists",
                f"version {template.version} of {template.id!r} exists with other content",
            )
        return 201, template.to_json()

    return await run_in_threadpool(idempotent, request, who, raw, run)


@router.get("/templates")
async def list_templates(request: Request, who: Caller) -> list[dict[str, Any]]:
    """Every version of every template of the tenant."""
    require(who, "admin", "app", "legal", "auditor", "compliance")
    found = await run_in_threadpool(_tenants(request).templates, who.tenant_id)
    return [t.to_json() for t in found]


@router.get("/templates/{template_id}")
async def get_template(
    request: Request,
    template_id: str,
    who: Caller,
    version: Annotated[int | None, Query(ge=1, le=MAX_TEMPLATE_VERSION)] = None,
) -> dict[str, Any]:
    """One template version (the latest without ``version``)."""
    require(who, "admin", "app", "legal", "auditor", "compliance")
    template = await run_in_threadpool(
        _tenants(request).template, who.tenant_id, template_id, version
    )
    if template is None:
        raise Problem(404, "template-not-found", f"no template {template_id!r} of that version")
    return template.to_json()


@router.put("/directory")
async def put_directory(request: Request, who: Caller) -> dict[str, Any]:
    """Replace the tenant's directory (admin); kept as a new version, old ones stay."""
    require(who, "admin")
    raw = await raw_body(request, _settings(request))
    from api.security import parse_json

    try:
        directory = Directory.from_json(parse_json(raw))
    except TemplateError as exc:
        raise Problem(422, "invalid-directory", str(exc)) from None
    version = await run_in_threadpool(_tenants(request).put_directory, who.tenant_id, directory)
    return {"version": version, **directory.to_json()}


@router.get("/directory")
async def get_directory(request: Request, who: Caller) -> dict[str, Any]:
    require(who, "admin", "app")
    directory = await run_in_threadpool(_tenants(request).directory, who.tenant_id)
    return directory.to_json()
