"""Settings for every ``evidence-ledger`` command, in one typed class.

Values come from the command line first, then ``EVIDENCE_LEDGER_*`` environment variables,
then the embedded defaults (SQLite, local TSA under the data dir). Unsafe combinations are
refused when the settings are built, not later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import ConfigurationError

ENV_PREFIX = "EVIDENCE_LEDGER_"
DEFAULT_DATA_DIR = Path("ledger-data")


@dataclass(frozen=True)
class Settings:
    """Where the ledger keeps its data and whom it asks for timestamps."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    tsa_urls: tuple[str, ...] = ()
    tsa_trust_roots: tuple[Path, ...] = field(default_factory=tuple)
    seal_interval: float = 0.25
    key_passphrase: str | None = field(default=None, repr=False)
    """Encrypts the local signing CA's keys; made and kept under the data dir if not given."""

    def __post_init__(self) -> None:
        if self.tsa_urls and not self.tsa_trust_roots:
            raise ConfigurationError(
                "external TSA URLs need trust roots (EVIDENCE_LEDGER_TSA_TRUST_ROOTS): "
                "tokens are verified on receipt and never accepted unchecked"
            )
        for url in self.tsa_urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigurationError(f"TSA URL {url!r} is not http(s)")
        if self.seal_interval <= 0:
            raise ConfigurationError("the sealing interval must be positive")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgres://", "postgresql://")
        ):
            raise ConfigurationError("the database URL must be a postgresql:// URL")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "keys" / "ledger-ed25519.pem"

    @property
    def local_tsa_dir(self) -> Path:
        return self.data_dir / "local-tsa"

    @property
    def local_ca_dir(self) -> Path:
        return self.data_dir / "local-ca"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def passphrase_path(self) -> Path:
        return self.data_dir / "keys" / "local-ca.passphrase"

    @classmethod
    def load(
        cls,
        *,
        data_dir: Path | None = None,
        database_url: str | None = None,
        tsa_urls: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from explicit values, falling back to the environment."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        env_dir = get("DATA_DIR")
        urls = tuple(tsa_urls) or tuple(
            u.strip() for u in (get("TSA_URLS") or "").split(",") if u.strip()
        )
        roots = tuple(
            Path(p) for p in (get("TSA_TRUST_ROOTS") or "").split(os.pathsep) if p.strip()
        )
        interval = get("SEAL_INTERVAL")
        return cls(
            data_dir=data_dir or (Path(env_dir) if env_dir else DEFAULT_DATA_DIR),
            database_url=database_url or get("DATABASE_URL"),
            tsa_urls=urls,
            tsa_trust_roots=roots,
            seal_interval=float(interval) if interval else 0.25,
            key_passphrase=get("KEY_PASSPHRASE"),
        )
