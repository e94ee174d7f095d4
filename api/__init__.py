"""HTTP API for upstream apps, legal teams and auditors."""
