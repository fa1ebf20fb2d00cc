"""The report over the audit trail (``deskgate report``): ``aggregate`` counts, ``formats`` and
``page`` render (text, JSON, CSV, HTML with ``charts``), ``command`` is the command line."""

from worker.commands.report.aggregate import Report, Stats, build

__all__ = ["Report", "Stats", "build"]
