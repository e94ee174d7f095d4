"""HTTP routes: log."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["log"])
