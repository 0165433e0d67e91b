"""The `clinicflow` command: one module per command group, assembled here."""

from clinicflow.cli.main import app

__all__ = ["app"]
