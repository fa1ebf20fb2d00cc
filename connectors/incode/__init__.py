"""Incode Omni: ``client`` (the API calls), ``results`` (a result read as a decision), ``webhook``
(Incode's session webhooks)."""

from connectors.incode.client import EmployeeNotFound, IncodeClient, Session
from connectors.incode.results import Decision, Result, findings, has_result, interpret

__all__ = [
    "Decision",
    "EmployeeNotFound",
    "IncodeClient",
    "Result",
    "Session",
    "findings",
    "has_result",
    "interpret",
]
