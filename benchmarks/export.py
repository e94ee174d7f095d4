"""Evidence pack export: a typical task beside zipping its files alone, and a 10,000-event task.

(a) A typical task: the demo's purchase request (16 acts through the task service) with two
1 MB PDFs attached, on SQLite. The export is timed beside writing the same members (read
back from the pack) to a ZIP with the same settings, which is the floor for any exporter.
(b) Tasks of 1,000 and 10,000 events (a created task, then comments). Each export runs in a
fresh child process, which reports its time, the peak of Python allocations during the
export (tracemalloc) and its peak RSS (``ru_maxrss``): memory should stay flat as the task
grows, since the pack is streamed.
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from benchmarks.common import machine, print_table, write_result
from evidence.demo import CHEN, LI, PRIYA, WONG, directory, purchase_template
from evidence.pack import export_pack
from evidence.services import open_task_service
from evidence.testing_pdfs import make_test_pdf
from ledger.app import Ledger
from ledger.blobs import BlobStore
from ledger.events import EventDraft
from ledger.settings import Settings
from ledger.task_service import TaskService
from ledger.workflow import Approve, Comment, Create, Remind, Submit, View, route

ROUNDS = 5
MB = 1024 * 1024


def _pdf(seed: int) -> bytes:
    """A real PDF of about 1 MB: a two-page document plus a 1 MB stream of random bytes
    (standing in for compressed images), so it passes the upload check like any PDF."""
    writer = IncrementalPdfFileWriter(io.BytesIO(make_test_pdf(f"Document {seed}")))
    blob = generic.StreamObject(stream_data=random.Random(seed).randbytes(MB))
    writer.root["/EvidenceLedgerBenchmarkPadding"] = writer.add_object(blob)
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _ledger(root: Path) -> Ledger:
    return Ledger.open(Settings(data_dir=root / "data", seal_interval=0.05))


def _typical(root: Path) -> tuple[Ledger, TaskService, uuid.UUID]:
    ledger = _ledger(root)
    ledger.start_sealer()
    service = open_task_service(ledger)  # the real signer: the report is signed, as in use
    docs = (service.upload(_pdf(1), "quotation.pdf"), service.upload(_pdf(2), "contract.pdf"))
    form = {"item": "laptops", "amount": {"amount": "12800.00", "currency": "HKD"}}
    task = uuid.uuid4()
    deadline = datetime.now(UTC) + timedelta(days=5)
    the_route = route(purchase_template(), form, CHEN.id, directory())
    service.create(
        task,
        Create(the_route, "Purchase", form, deadline, documents=docs),
        CHEN.acting("initiator"),
    )
    acts: list[tuple[Any, Any, str]] = [
        (Submit(), CHEN, "initiator"),
        (View(docs[0].sha256), LI, "approver"),
        (View(docs[1].sha256), LI, "approver"),
        (Comment("Checked both quotations"), LI, "approver"),
        (Approve("OK"), LI, "approver"),
        (View(docs[0].sha256), PRIYA, "approver"),
        (View(docs[1].sha256), PRIYA, "approver"),
        (Remind(PRIYA.id), CHEN, "initiator"),
        (Comment("Budget line has room"), PRIYA, "approver"),
        (Approve("OK"), PRIYA, "approver"),
        (View(docs[0].sha256), WONG, "approver"),
        (View(docs[1].sha256), WONG, "approver"),
        (Comment("Fine"), WONG, "approver"),
        (Comment("Please deliver by Friday"), CHEN, "initiator"),
        (Comment("Noted"), LI, "approver"),
        (Comment("Noted"), PRIYA, "approver"),
        (Comment("Noted"), WONG, "approver"),
        (Comment("Thanks"), CHEN, "initiator"),
        (Comment("Filed"), CHEN, "initiator"),
    ]
    for command, who, role in acts:
        service.act(task, command, who.acting(role))
    return ledger, service, task


def _large(root: Path, events: int) -> None:
    """A ledger whose one task has ``events`` events: created, submitted, then comments."""
    with _ledger(root) as ledger:
        service = TaskService(ledger.store, BlobStore(ledger.settings.blobs_dir))
        doc = service.upload(_pdf(3), "contract.pdf")
        form = {"item": "laptops", "amount": {"amount": "12800.00", "currency": "HKD"}}
        task = uuid.UUID(int=events)
        the_route = route(purchase_template(), form, CHEN.id, directory())
        service.create(
            task,
            Create(the_route, "Big task", form, None, documents=(doc,)),
            CHEN.acting("initiator"),
        )
        service.act(task, Submit(), CHEN.acting("initiator"))
        acting = LI.acting("approver")
        remaining = events - 2
        while remaining:
            n = min(1000, remaining)
            ledger.append(
                [
                    EventDraft(
                        task, "comment.added", acting.actor, acting.context, {"text": f"c{i}"}
                    )
                    for i in range(n)
                ]
            )
            remaining -= n
        ledger.sealer().seal()
        ledger.sealer().timestamp_pending()


def _child_export(root: str, events: int, queue: Any) -> None:
    """Export once untraced (the time), then once under tracemalloc (the traced peak).

    tracemalloc slows Python several times over, so the timed run goes without it; the
    process's peak RSS covers both.
    """
    logging.disable(logging.WARNING)
    with _ledger(Path(root)) as ledger:
        service = open_task_service(ledger)
        started = time.perf_counter()
        summary = export_pack(
            ledger, service, uuid.UUID(int=events), Path(root) / "pack.zip", include_report=True
        )
        seconds = time.perf_counter() - started
        tracemalloc.start()
        export_pack(
            ledger, service, uuid.UUID(int=events), Path(root) / "traced.zip", include_report=True
        )
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "events": summary.events,
            "seconds": seconds,
            "traced_peak_mb": peak / MB,
            "max_rss_mb": rss / 1024,
            "pack_mb": summary.size / MB,
            "files": summary.files,
        }
    )


def _zip_alone(pack: Path, out: Path) -> float:
    """Seconds to write the pack's members again as a ZIP with the same settings."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with zipfile.ZipFile(pack) as archive:
            infos = archive.infolist()
            archive.extractall(folder)
        started = time.perf_counter()
        with zipfile.ZipFile(out, "w") as target:
            for info in infos:
                data = (folder / info.filename).read_bytes()
                target.writestr(info, data, compresslevel=1)
        return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    logging.getLogger("pyhanko.sign.validation.dss").setLevel(logging.ERROR)
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        ledger, service, task = _typical(root / "typical")
        try:
            # Warm up: first use loads pyHanko, fontTools and the fonts, once per process.
            export_pack(ledger, service, task, root / "warm.zip", include_report=True)
            pack_times, zip_times, report_times = [], [], []
            for i in range(ROUNDS):
                started = time.perf_counter()
                summary = export_pack(
                    ledger, service, task, root / f"t{i}.zip", include_report=False
                )
                pack_times.append(time.perf_counter() - started)
                zip_times.append(_zip_alone(summary.path, root / f"z{i}.zip"))
            for i in range(ROUNDS):
                started = time.perf_counter()
                export_pack(ledger, service, task, root / f"r{i}.zip", include_report=True)
                report_times.append(time.perf_counter() - started)
        finally:
            ledger.close()
        results["typical"] = {
            "events": summary.events,
            "pack_mb": summary.size / MB,
            "export_s": statistics.median(pack_times),
            "zip_alone_s": statistics.median(zip_times),
            "export_with_report_s": statistics.median(report_times),
        }
        context = multiprocessing.get_context("spawn")
        results["large"] = []
        for events in (1_000, 10_000):
            folder = root / f"large-{events}"
            _large(folder, events)
            queue = context.Queue()
            child = context.Process(target=_child_export, args=(str(folder), events, queue))
            child.start()
            results["large"].append(queue.get(timeout=600))
            child.join()
    typical = results["typical"]
    print_table(
        ["typical task", "events", "pack MB", "export s", "zip alone s", "with report s"],
        [
            [
                "purchase request, two 1 MB PDFs",
                typical["events"],
                f"{typical['pack_mb']:.2f}",
                f"{typical['export_s']:.3f}",
                f"{typical['zip_alone_s']:.3f}",
                f"{typical['export_with_report_s']:.2f}",
            ]
        ],
    )
    print_table(
        ["events", "export s", "traced peak MB", "max RSS MB", "pack MB", "files"],
        [
            [
                r["events"],
                f"{r['seconds']:.2f}",
                f"{r['traced_peak_mb']:.1f}",
                f"{r['max_rss_mb']:.0f}",
                f"{r['pack_mb']:.1f}",
                r["files"],
            ]
            for r in results["large"]
        ],
    )
    path = write_result("export", results)
    print(f"results: {path}")
    big = results["large"][-1]
    return 0 if typical["export_s"] <= 1.0 and big["seconds"] <= 10.0 else 1
