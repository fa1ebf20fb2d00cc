"""Every simulator the sandbox runs, by name. A new one (a Jira Service Management desk, say) is
one simulator module exporting a ``Simulator`` (``sandbox/simulator.py``), its driver beside it,
and one line here; ``Stack``, ``deskgate demo``/``dev``, the benchmarks and the end-to-end and
fault fixtures all iterate this."""

from __future__ import annotations

from typing import Any

from sandbox import entra, incode, okta, servicenow, zendesk
from sandbox.simulator import Simulator

SIMULATORS: dict[str, Simulator[Any]] = {
    sim.name: sim
    for sim in (
        zendesk.SIMULATOR,
        servicenow.SIMULATOR,
        incode.SIMULATOR,
        okta.SIMULATOR,
        entra.SIMULATOR,
    )
}
# The desk kinds the sandbox can drive (the simulators with a driver), in registry order.
DESKS: tuple[str, ...] = tuple(name for name, sim in SIMULATORS.items() if sim.driver)
