"""A ledger writer for the crash tests: appends until killed, printing each acknowledgement.

Run it as ``python -m tests.ledger.crash_writer --data-dir D [--database-url U]`` (or by
file path). It opens the ledger, starts the background sealer (so checkpoints and
timestamps are being written too when the kill comes) and appends single events and
batches of 2-10 across a few fixed streams, which every restart continues. Only after
``append`` has returned does it print one line per stored event and flush:

    ack <event id> <leaf index> <stream id> <sequence>

so every line the parent reads stands for an acknowledged event. The first line, printed
once the ledger is open, is ``ready <tree size>``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run by file path: make ``ledger`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.app import Ledger
from ledger.events import Actor, EventDraft, IdentityFactor, RequestContext
from ledger.settings import Settings

#: The streams every run appends to, so each restart extends the chains the last one left.
STREAM_NAMESPACE = uuid.UUID("6f1c2d4e-8a8b-4c3d-9e0f-123456789abc")
STREAMS = tuple(uuid.uuid5(STREAM_NAMESPACE, f"crash-task-{n}") for n in range(4))

SIGNER = Actor(id="u-42", display_name="李娜 Li Na", organisation="Northwind", role="signer")
PHONE = RequestContext(
    ip="2001:db8::7",
    user_agent="Mozilla/5.0 (Android) DingTalk/7.6",
    device_id="dev-crash",
    platform="android",
    request_id="req-crash",
)
TYPES = ("document.viewed", "identity.verified", "step.approved", "document.signed")


def drafts(rng: random.Random, count: int) -> list[EventDraft]:
    made: list[EventDraft] = []
    for _ in range(count):
        kind = rng.choice(TYPES)
        factors: tuple[IdentityFactor, ...] = ()
        if kind == "identity.verified":
            factors = (
                IdentityFactor(
                    factor="sms_otp",
                    method="sms",
                    result="passed",
                    verified_at=datetime.now(UTC),
                ),
            )
        made.append(
            EventDraft(
                stream_id=rng.choice(STREAMS),
                type=kind,
                actor=SIGNER,
                context=PHONE,
                identity_factors=factors,
                data={"amount": f"{rng.randint(1, 999999)}.{rng.randint(0, 99):02d}"},
            )
        )
    return made


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--seal-interval", type=float, default=0.05)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop by itself after this long, so a lost parent never leaves it running",
    )
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    settings = Settings(
        data_dir=args.data_dir,
        database_url=args.database_url,
        seal_interval=args.seal_interval,
    )
    out = sys.stdout
    deadline = time.monotonic() + args.max_seconds
    with Ledger.open(settings) as ledger:
        ledger.start_sealer()
        out.write(f"ready {ledger.store.tree_size()}\n")
        out.flush()
        while time.monotonic() < deadline:
            count = 1 if rng.random() < 0.5 else rng.randint(2, 10)
            receipts = ledger.append(drafts(rng, count))
            for r in receipts:
                out.write(f"ack {r.event_id} {r.leaf_index} {r.stream_id} {r.sequence}\n")
                out.flush()


if __name__ == "__main__":
    main()
