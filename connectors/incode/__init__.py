"""Incode Omni: ``client`` (the API calls), ``results`` (a result read as a decision), ``webhook``
(Incode's session webhooks)."""

from connectors.incode.client import EmployeeNotFound, IncodeClient, Session
from connectors.incode.results import Decision, Result, findings, interpret

__all__ = [
    "Decision",
    "EmployeeNotFound",
    "IncodeClient",
    "Result",
    "Session",
    "findings",
    "interpret",
]
