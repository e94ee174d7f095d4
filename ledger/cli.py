"""``evidence-ledger``: the operator's command line.

Every command takes ``--data-dir`` and ``--database-url`` (also read from
``EVIDENCE_LEDGER_DATA_DIR`` and ``EVIDENCE_LEDGER_DATABASE_URL``).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.app import Ledger
from ledger.audit import AuditReport, audit
from ledger.errors import LedgerError
from ledger.settings import Settings
from ledger.timeline import timeline

app = typer.Typer(
    help="Evidence Ledger: an append-only, signed and timestamped record of approvals "
    "and signatures.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where keys, the SQLite log and the local TSA live."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="postgresql://… URL; SQLite under the data dir if absent."),
]


def _open(data_dir: Path | None, database_url: str | None) -> Ledger:
    settings = Settings.load(data_dir=data_dir, database_url=database_url)
    return Ledger.open(settings)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@app.command()
def key(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Print the log's verifier key (C2SP signed-note vkey form)."""
    with _open(data_dir, database_url) as ledger:
        print(ledger.key.verifier_key())


@app.command()
def checkpoint(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Print the latest signed checkpoint (C2SP tlog-checkpoint signed note)."""
    with _open(data_dir, database_url) as ledger:
        latest = ledger.store.latest_checkpoint()
        if latest is None:
            errors.print("no checkpoint has been signed yet (run `evidence-ledger seal`)")
            raise typer.Exit(1)
        sys.stdout.write(latest.note)


@app.command()
def seal(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Sign a checkpoint of the current tree and timestamp every checkpoint still waiting."""
    with _open(data_dir, database_url) as ledger:
        sealer = ledger.sealer()
        made = sealer.seal()
        if made is None and sealer.lock is not None and not sealer.lock.held:
            console.print("another sealer holds the sealer lock and signs this log's checkpoints")
        elif made is None:
            console.print("the latest checkpoint already covers the whole log")
        else:
            console.print(f"signed a checkpoint at size {made.tree_size}")
        try:
            count = sealer.timestamp_pending(limit=1000)
        except LedgerError as exc:
            errors.print(f"[red]timestamping failed[/red]: {exc}; checkpoints stay untimestamped")
            raise typer.Exit(1) from exc
        console.print(f"timestamped {count} checkpoint(s)")


@app.command(name="sealer")
def sealer_command(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Run the sealer alone (no HTTP) until stopped: it seals while elected, else stands by.

    One sealer per log signs: the holder of the sealer lock (on PostgreSQL an advisory
    lock, on SQLite a file lock). Others, here or in `serve` workers, take over within
    one sealing interval once the holder is gone.
    """
    import signal
    import threading

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def announce(holding: bool) -> None:
        state = "elected: sealing" if holding else "standing by"
        print(f"sealer {state}", flush=True)

    with _open(data_dir, database_url) as ledger:
        print(f"sealer started for log {ledger.key.name}", flush=True)
        announce(False)
        ledger.start_sealer(on_change=announce)
        stopped.wait()
    print("sealer stopped", flush=True)


def _print_report(report: AuditReport) -> None:
    console.print(
        f"events {report.events_checked}, streams {report.streams}, "
        f"tree nodes {report.nodes_checked}, checkpoints {report.checkpoints_checked}, "
        f"timestamps {report.timestamps_checked}"
    )
    if report.untimestamped:
        console.print(
            f"[yellow]{len(report.untimestamped)} checkpoint(s) still wait for a timestamp "
            f"(sizes {report.untimestamped[:5]}{'…' if len(report.untimestamped) > 5 else ''})"
        )
    if report.passed:
        console.print("[green]audit passed[/green]: every hash, chain link and tree head matches")
        return
    first = report.findings[0]
    console.print(f"[red]audit FAILED[/red] at {first.location}: {first.reason}")
    for finding in report.findings[1:10]:
        console.print(f"  also: {finding}")
    if len(report.findings) > 10:
        console.print(f"  … and {len(report.findings) - 10} more")


def run_audit(ledger: Ledger, show_progress: bool) -> AuditReport:
    if not show_progress:
        return audit(ledger.store, ledger.key, ledger.tsa_trust_roots)
    with Progress(
        TextColumn("auditing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} events"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    ) as bar:
        task = bar.add_task("audit", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return audit(ledger.store, ledger.key, ledger.tsa_trust_roots, progress)


@app.command(name="audit")
def audit_command(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
) -> None:
    """Re-derive every hash, chain link and tree head from the stored rows and check them."""
    with _open(data_dir, database_url) as ledger:
        report = run_audit(ledger, show_progress=not as_json and errors.is_terminal)
        _record_audit(ledger, report)
    if as_json:
        print(
            json.dumps(
                {
                    "passed": report.passed,
                    "tree_size": report.tree_size,
                    "events_checked": report.events_checked,
                    "checkpoints_checked": report.checkpoints_checked,
                    "timestamps_checked": report.timestamps_checked,
                    "untimestamped": report.untimestamped,
                    "findings": [
                        {"subject": f.subject, "location": f.location, "reason": f.reason}
                        for f in report.findings
                    ],
                },
                indent=2,
            )
        )
    else:
        _print_report(report)
    if not report.passed:
        raise typer.Exit(1)


def _record_audit(ledger: Ledger, report: AuditReport) -> None:
    """Keep the outcome for the compliance views (their ``audit_failure`` rule)."""
    from projections.database import database_for
    from projections.facts import record_audit_run
    from projections.task_rows import micros

    first = str(report.findings[0]) if report.findings else None
    database = database_for(ledger.store)
    try:
        ran_at = micros(ledger.store.clock())
        assert ran_at is not None
        record_audit_run(database, ran_at, report.tree_size, report.passed, first)
    finally:
        database.close()


@app.command()
def kpi(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    since: Annotated[str | None, typer.Option(help="Period start: YYYY-MM-DD (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Period end, exclusive: YYYY-MM-DD.")] = None,
    template: Annotated[str | None, typer.Option(help="Only this template id.")] = None,
    department: Annotated[str | None, typer.Option(help="Only this department.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's tasks.")] = None,
    output: Annotated[
        str, typer.Option("--format", help="table (readable), json, csv or parquet.")
    ] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Directory for csv/parquet files (one per table).")
    ] = None,
) -> None:
    """KPIs and compliance breaches from the projection: a table, JSON, CSV or Parquet."""
    from projections.kpi_export import KpiCommandError, run_kpi_command

    with _open(data_dir, database_url) as ledger:
        try:
            run_kpi_command(
                ledger.store,
                console,
                since=since,
                until=until,
                template=template,
                department=department,
                tenant=tenant,
                output=output,
                out=out,
                snapshots=ledger.settings.data_dir / "kpi-facts",
            )
        except KpiCommandError as exc:
            errors.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(3) from None


@app.command()
def demo(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Run the purchase request and supply contract story, then prove and audit it."""
    # The composition root: the demo needs PDF signing, which lives above the ledger core.
    from evidence.demo import run_story
    from evidence.services import open_task_service

    # The local CA publishes no revocation data; pyHanko warns of that on every B-LTA.
    logging.getLogger("pyhanko.sign.validation.dss").setLevel(logging.ERROR)

    with _open(data_dir, database_url) as ledger:
        where = ledger.settings.database_url or ledger.settings.sqlite_path
        console.print(f"[bold]Evidence Ledger demo[/bold] — log {ledger.key.name} in {where}")
        ledger.start_sealer()
        service = open_task_service(ledger)
        run = run_story(service, say=lambda line: console.print(f"  {line}"))
        for task in (run.purchase, run.contract):
            _print_timeline(ledger, task)
        count = sum(len(r.receipts) for r in run.results)
        console.print(f"\nrecorded {count} events in two tasks")

        final = service.state(run.contract).document(run.contract_document)
        assert final is not None
        out = ledger.settings.data_dir / "demo" / "supply-contract-NW-2026-112-signed.pdf"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(service.blobs.read(final.current))
        console.print(
            f"signed contract (PAdES B-LTA, {len(final.revisions)} revisions): {out.resolve()}"
        )
        from evidence.pack import export_pack

        pack = ledger.settings.data_dir / "demo" / "supply-contract-NW-2026-112-evidence.zip"
        summary = export_pack(ledger, service, run.contract, pack, timezone="Asia/Hong_Kong")
        console.print(
            f"evidence pack ({summary.events} events, {summary.files} files, report.pdf in "
            f"English and Chinese, signed): {pack.resolve()}"
        )
        _verify_demo_pack(ledger, service, pack)

        signed = run.supplier_signed.receipts[0]
        last = max(r.leaf_index for r in run.supplier_signed.receipts)
        checkpoint = ledger.wait_for_checkpoint(last, timestamped=True)
        stamp = ledger.store.timestamp_for(checkpoint.tree_size)
        assert stamp is not None
        console.print("\n[bold]Latest signed checkpoint[/bold] (C2SP tlog-checkpoint):")
        console.print(checkpoint.note, end="", markup=False, highlight=False)
        console.print(f"timestamped by {stamp.tsa_name} at {stamp.gen_time} ({stamp.tsa_url})")

        proof = ledger.store.inclusion_proof(signed.leaf_index, checkpoint.tree_size)
        console.print(
            f"\n[bold]Inclusion proof[/bold] of the supplier's signature "
            f"(event {signed.event_id}, leaf {signed.leaf_index}):"
        )
        command = [
            "evidence-verify",
            "inclusion",
            "--leaf-hash", _b64(signed.event_hash),
            "--index", str(signed.leaf_index),
            "--size", str(checkpoint.tree_size),
            "--root", _b64(checkpoint.root_hash),
            "--proof", ",".join(_b64(p) for p in proof),
        ]  # fmt: skip
        pairs = [
            f"    {flag} '{value}'"
            for flag, value in zip(command[2::2], command[3::2], strict=True)
        ]
        console.print(" \\\n".join([" ".join(command[:2]), *pairs]), markup=False, highlight=False)
        verifier = shutil.which("evidence-verify") or str(
            Path(sys.executable).parent / "evidence-verify"
        )
        if Path(verifier).exists():
            result = subprocess.run([verifier, *command[1:]], capture_output=True, text=True)
            console.print(
                f"independent verifier says: {result.stdout.strip() or result.stderr.strip()}"
            )
        console.print(f"\nverifier key: {ledger.key.verifier_key()}")
        console.print("\n[bold]Audit[/bold] of the whole log:")
        report = run_audit(ledger, show_progress=False)
        _print_report(report)
        console.print(f"\ndata dir: {ledger.settings.data_dir.resolve()}")
    if not report.passed:
        raise typer.Exit(1)


def _verify_demo_pack(ledger: Ledger, service: Any, pack: Path) -> None:
    """Run the independent verifier on the pack, as an auditor would, and print its verdict.

    The auditor's trust anchors are written beside the pack: the ledger's verifier key, the
    local signing CA's root and the local TSA's root.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    anchors = pack.parent / "trust-anchors"
    anchors.mkdir(exist_ok=True)
    signer_root = anchors / "signing-ca-root.pem"
    signer_root.write_bytes(service.signer.ca.root_certificate.public_bytes(Encoding.PEM))
    tsa_root = anchors / "tsa-roots.pem"
    tsa_root.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ledger.tsa_trust_roots))
    vkey = ledger.key.verifier_key()
    command = [
        "evidence-verify", str(pack), "--ledger-key", vkey,
        "--trust-root", str(signer_root), "--tsa-root", str(tsa_root),
    ]  # fmt: skip
    verifier = shutil.which("evidence-verify") or str(
        Path(sys.executable).parent / "evidence-verify"
    )
    result = subprocess.run(
        [verifier, *command[1:], "--no-progress"], capture_output=True, text=True
    )
    verdict = (result.stdout.strip() or result.stderr.strip()).splitlines()
    console.print(
        f"\n[bold]Independent verification[/bold] of the pack (exit {result.returncode}):"
    )
    console.print(" ".join(command), markup=False, highlight=False)
    for line in verdict[:1] + [v for v in verdict[1:] if "FAILED" in v or "INDETERMINATE" in v]:
        console.print(f"  {line}", markup=False, highlight=False)


def _print_timeline(ledger: Ledger, task: UUID) -> None:
    """The task's events: when, who, what, then from where and with which identity check."""
    events = [e.envelope for e in ledger.store.read_stream(task)]
    console.print(f"\n[bold]{events[0]['data'].get('title', '')}[/bold] — task {task}")
    for e in timeline(events):
        who = e.actor_name + (f" ({e.organisation})" if e.organisation else "")
        console.print(
            f"{e.sequence:>3}  {e.server_time[:23]}  {who}: [bold]{e.action} {e.action_zh}[/bold]"
            f" {e.details}",
            highlight=False,
        )
        where = " · ".join(
            x for x in (e.ip, e.device, f"identity: {e.identity}" if e.identity else None) if x
        )
        if where:
            console.print(f"     {where}", style="dim", highlight=False)


@app.command()
def export(
    task_id: Annotated[str, typer.Argument(help="The task (stream) id, a UUID.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the pack (a ZIP).")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    report: Annotated[
        bool | None,
        typer.Option("--report/--no-report", help="Require or leave out report.pdf."),
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="IANA time zone for local times in the report.")
    ] = "UTC",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a timestamped checkpoint.")
    ] = 30.0,
) -> None:
    """Write the evidence pack of one task (format in docs/evidence-pack.md)."""
    # The composition root: packs need PDF machinery, which lives above the ledger core.
    from rich.progress import TaskID

    from evidence.pack import PackError, export_pack
    from evidence.services import open_task_service

    logging.getLogger("pyhanko.sign.validation.dss").setLevel(logging.ERROR)
    try:
        task = UUID(task_id)
    except ValueError:
        errors.print(f"[red]error[/red]: {task_id!r} is not a task id (a UUID)")
        raise typer.Exit(3) from None
    with _open(data_dir, database_url) as ledger:
        service = open_task_service(ledger)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=errors,
            transient=True,
            disable=not errors.is_terminal,
        ) as bar:
            bars: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase == "done":
                    return
                if phase not in bars:
                    bars[phase] = bar.add_task(phase, total=total)
                bar.update(bars[phase], completed=done, total=total)

            try:
                summary = export_pack(
                    ledger, service, task, out, progress,
                    include_report=report, timezone=timezone, wait=wait,
                )  # fmt: skip
            except PackError as exc:
                errors.print(f"[red]error[/red]: {exc}")
                raise typer.Exit(1) from None
    console.print(
        f"evidence pack of task {task}: {summary.path} ({summary.size:,} bytes, "
        f"{summary.files} files, {summary.events} events, checkpoint {summary.checkpoint_size}"
        f"{', with report.pdf' if summary.report_included else ', no report.pdf'})"
    )
    console.print(f"sha256 {summary.sha256}; checks at export: {summary.verdict}")


@app.command()
def serve(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (one database for all).")
    ] = 1,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(help="Address or network of a proxy whose X-Forwarded-For is believed."),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) and run the sealer and the scheduler."""
    import ipaddress
    import os
    import socket

    import uvicorn

    for proxy in trusted_proxy or []:  # checked before anything is made
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            errors.print(
                f"[red]error[/red]: --trusted-proxy {proxy!r} is not an address or network"
            )
            raise typer.Exit(2) from None
    settings = Settings.load(data_dir=data_dir, database_url=database_url)
    with Ledger.open(settings):  # make keys and tables once, before workers race for them
        pass
    os.environ["EVIDENCE_LEDGER_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["EVIDENCE_LEDGER_DATABASE_URL"] = settings.database_url
    if trusted_proxy:
        os.environ["EVIDENCE_LEDGER_TRUSTED_PROXIES"] = ",".join(trusted_proxy)
    # Bind the listening socket here, with TCP_NODELAY: Linux passes the option on to
    # every accepted connection. Without it (asyncio sets none on connections accepted
    # from a socket it was handed) each response's body, written after its head, waited
    # for the client's delayed ACK: about 40 ms per request.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        errors.print(f"[red]error[/red]: cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(1) from None
    if workers > 1:
        # Our own supervisor: it accepts and deals connections to the workers in turn
        # (api/workers.py), where uvicorn's would let the first worker woken take them all.
        from api import workers as worker_processes

        try:
            status = worker_processes.serve(listener, workers, log_level="info")
        finally:
            listener.close()
        raise typer.Exit(status)
    listener.set_inheritable(True)
    from api.workers import APP, HTTP, LOOP

    try:
        uvicorn.run(APP, factory=True, fd=listener.fileno(), log_level="info", http=HTTP, loop=LOOP)
    finally:
        listener.close()


tenant_app = typer.Typer(help="Tenants and their API keys (operator commands).")
app.add_typer(tenant_app, name="tenant")


@tenant_app.command("create")
def tenant_create(
    name: str,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    tenant_id: Annotated[str | None, typer.Option(help="Choose the id (default: random).")] = None,
) -> None:
    """Create a tenant and its first admin API key (shown once)."""
    from api.tenancy import TenantStore

    with _open(data_dir, database_url) as ledger:
        tenants = TenantStore(ledger.store)
        try:
            made = tenants.create_tenant(name, tenant_id)
            key = tenants.create_api_key(made, "admin", "first admin key")
        finally:
            tenants.close()
    console.print(f"tenant: {made}")
    console.print(f"admin API key (shown once): {key}", highlight=False)


@tenant_app.command("api-key")
def tenant_api_key(
    tenant: str,
    role: Annotated[str, typer.Option(help="app, legal, auditor, compliance or admin")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    label: Annotated[str | None, typer.Option(help="A note on who holds the key.")] = None,
) -> None:
    """Make another API key for a tenant (shown once; only its hash is kept)."""
    from api.tenancy import TenantStore

    with _open(data_dir, database_url) as ledger:
        tenants = TenantStore(ledger.store)
        try:
            key = tenants.create_api_key(tenant, role, label)
        except ValueError as exc:
            errors.print(f"[red]error[/red]: {exc}")
            raise typer.Exit(1) from None
        finally:
            tenants.close()
    console.print(key, highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except LedgerError as exc:
        errors.print(f"[red]error[/red]: {exc}")
        sys.exit(1)
