"""Start the API from settings: what ``evidence-ledger serve`` and each uvicorn worker run.

uvicorn starts workers by import string, so a worker rebuilds everything from the same
settings the command line was given (``EVIDENCE_LEDGER_*`` environment variables):
``uvicorn --factory api.server:app_from_environment``. Several workers may share one
database: appends are serialised by the store, one sealer signs at a time (the holder of
the sealer lock; the others stand by, see docs/scaling.md), and the scheduler and
projection tolerate company.
"""

from __future__ import annotations

import os
from datetime import timedelta

from fastapi import FastAPI

from api import log_redaction
from api.app import create_app
from api.security import ApiSettings
from evidence.services import open_task_service
from ledger.app import Ledger
from ledger.settings import ENV_PREFIX, Settings


def api_settings_from_environment() -> ApiSettings:
    proxies = os.environ.get(ENV_PREFIX + "TRUSTED_PROXIES", "")
    window = os.environ.get(ENV_PREFIX + "CLIENT_TIME_WINDOW", "")
    return ApiSettings(
        trusted_proxies=tuple(p.strip() for p in proxies.split(",") if p.strip()),
        client_time_window=timedelta(seconds=float(window)) if window else timedelta(minutes=5),
    )


def app_from_environment() -> FastAPI:
    """The API over the ledger the environment names (data dir, database URL, TSAs)."""
    log_redaction.install()  # uvicorn has set up its loggers by now
    ledger = Ledger.open(Settings.load())
    return create_app(
        ledger,
        open_task_service(ledger),
        settings=api_settings_from_environment(),
        close_ledger=True,
    )
