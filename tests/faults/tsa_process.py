"""Serve the local RFC 3161 TSA of a directory on a fixed loopback port until killed.

``python -m tests.faults.tsa_process DIR PORT``: the fault tests run the TSA as a process of
its own, so they can kill it (the TSA is down) or stop it (the TSA hangs) and start it
again on the same URL while the ledger keeps running.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from ledger.local_tsa import LocalTimestampAuthority


def main() -> None:
    authority = LocalTimestampAuthority.load_or_create(Path(sys.argv[1]))
    authority.serve(port=int(sys.argv[2]))
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
