"""The task service of one ledger, wired with the embedded default's signing parts.

The ledger core knows nothing of PDFs; this is where the local CA, pyHanko signing and
the ledger's TSA are put behind :class:`ledger.task_service.TaskService`. The CLI and the
HTTP API start from :func:`open_task_service`.
"""

from __future__ import annotations

from evidence.local_ca import LocalCertificateAuthority
from evidence.task_signing import LocalCaDocumentSigner
from ledger.app import Ledger
from ledger.blobs import BlobStore
from ledger.task_service import TaskService


def open_task_service(ledger: Ledger) -> TaskService:
    """Tasks on ``ledger``: documents under the data dir, signatures from the local CA."""
    settings = ledger.settings
    passphrase = ledger.key_passphrase()
    ca = LocalCertificateAuthority.load_or_create(settings.local_ca_dir, passphrase)
    signer = LocalCaDocumentSigner(
        ca,
        passphrase,
        timestamp_url=ledger.signature_tsa_url(),
        tsa_trust_roots=ledger.tsa_trust_roots,
    )
    return TaskService(ledger.store, BlobStore(settings.blobs_dir), signer)
