"""``python -m benchmarks verify``: the independent verifier's speed (issue 6 targets).

- a typical pack (the demo story's signed contract: 10 events, the original, three signed
  revisions and the signed report) verified end to end: target at most 1 s;
- a pack of 10,000 events (one task, events appended with the store directly, exported
  without report): target at most 5 s;
- RFC 9162 inclusion-proof checks (``verifier.verify_inclusion``) on a 1,000,000-leaf tree
  shape: target at least 50,000 per second.

Each timing is the median of ``--verify-rounds`` runs, after one warm-up run.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_result

ROUNDS = 5
BIG_EVENTS = 10_000
PROOF_CHECKS = 50_000


def _anchors(ledger: Any, service: Any) -> dict[str, Any]:
    from verifier import VerifierKey

    return {
        "ledger_keys": [VerifierKey.from_string(ledger.key.verifier_key())],
        "trust_roots": list(service.signer.signer_trust_roots),
        "tsa_roots": list(ledger.tsa_trust_roots),
    }


def _timed(path: Path, anchors: dict[str, Any], rounds: int) -> tuple[float, str]:
    from verifier.pack import verify_pack

    verify_pack(path, **anchors)  # warm-up: imports, pyHanko's first load
    times, indication = [], ""
    for _ in range(rounds):
        started = time.perf_counter()
        report = verify_pack(path, **anchors)
        times.append(time.perf_counter() - started)
        indication = report.indication.value
    return statistics.median(times), indication


def _packs(root: Path) -> tuple[Path, Path, dict[str, Any]]:
    from evidence.demo import run_story
    from evidence.pack import _stream_head, export_pack
    from evidence.services import open_task_service
    from ledger.app import Ledger
    from ledger.events import Actor, EventDraft, RequestContext
    from ledger.settings import Settings

    with Ledger.open(Settings(data_dir=root / "data", seal_interval=0.05)) as ledger:
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service)
        typical = export_pack(ledger, service, run.contract, root / "typical.zip").path
        # 10,000 events: the purchase task plus comments appended with the store directly
        actor = Actor("u-1001", "陈小明 Chen Xiaoming", "initiator", "ACME Trading (HK) Ltd")
        context = RequestContext(ip="203.0.113.24", device_id="dev-7f3a-win")
        have = _stream_head(ledger.store, run.purchase)[0]  # type: ignore[index]
        while have < BIG_EVENTS:
            batch = min(500, BIG_EVENTS - have)
            drafts = [
                EventDraft(run.purchase, "comment.added", actor, context, {"text": f"note {i}"})
                for i in range(have, have + batch)
            ]
            ledger.append(drafts)
            have += batch
        ledger.wait_for_checkpoint(ledger.store.tree_size() - 1, timestamped=True, timeout=60)
        big = export_pack(
            ledger, service, run.purchase, root / "big.zip", include_report=False, wait=60
        ).path
        return typical, big, _anchors(ledger, service)


def _inclusion_rate(checks: int) -> float:
    from verifier import ProofError, leaf_hash, root_from_inclusion_proof, verify_inclusion

    size = 1_000_000
    rng = random.Random(9162)
    # Proofs of random leaves in a tree of ``size`` leaves (about 20 hashes each, the RFC
    # 9162 path length); siblings are random and each root is computed once from its proof,
    # so every timed check does the full work of a real one and passes.
    cases = []
    for _ in range(1000):
        index = rng.randrange(size)
        leaf = leaf_hash(uuid.UUID(int=rng.getrandbits(128)).bytes)
        for length in range(1, 40):
            proof = [hashlib.sha256(rng.randbytes(8)).digest() for _ in range(length)]
            try:
                root = root_from_inclusion_proof(leaf, index, size, proof)
            except ProofError:
                continue
            cases.append((leaf, index, proof, root))
            break
    started = time.perf_counter()
    done = 0
    while done < checks:
        for leaf, index, proof, root in cases:
            verify_inclusion(leaf, index, size, proof, root)
        done += len(cases)
    return done / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> int:
    rounds = getattr(args, "verify_rounds", ROUNDS)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as directory:
        typical, big, anchors = _packs(Path(directory))
        typical_s, typical_verdict = _timed(typical, anchors, rounds)
        big_s, big_verdict = _timed(big, anchors, max(1, rounds // 2))
        typical_size, big_size = typical.stat().st_size, big.stat().st_size
    rate = _inclusion_rate(PROOF_CHECKS)
    payload = {
        "machine": machine(),
        "typical_pack": {
            "seconds": typical_s, "indication": typical_verdict, "bytes": typical_size,
        },
        "big_pack": {
            "events": BIG_EVENTS, "seconds": big_s, "indication": big_verdict, "bytes": big_size,
        },
        "inclusion_checks_per_second": rate,
        "targets": {"typical_s": 1.0, "big_s": 5.0, "inclusion_per_s": 50_000},
    }  # fmt: skip
    path = write_result("verify", payload)
    print(f"typical pack: {typical_s * 1000:.0f} ms ({typical_verdict}); target 1000 ms")
    print(f"{BIG_EVENTS}-event pack: {big_s:.2f} s ({big_verdict}); target 5 s")
    print(f"inclusion checks: {rate:,.0f}/s; target 50,000/s")
    print(f"results: {path}")
    ok = typical_s <= 1.0 and big_s <= 5.0 and rate >= 50_000
    ok = ok and typical_verdict == big_verdict == "TOTAL_PASSED"
    return 0 if ok else 1
