"""The plain-data view of one function call that the core works on (no protobuf here)."""

import datetime
from dataclasses import dataclass, field

from function.allocation import Requirement

FATAL = "Fatal"
WARNING = "Warning"
NORMAL = "Normal"

# What a tenant step run did with claims (StepResult.claims): it issued one for a new port,
# issued one for the port the XR already listens on, found its last one taken by another
# XR, or gave one up.
CLAIMED, ADOPTED, LOST, RELEASED = "claimed", "adopted", "lost", "released"


@dataclass
class StepRequest:
    xr: dict  # the observed composite resource
    desired_xr: dict = field(default_factory=dict)  # the composite as earlier steps left it
    observed: dict[str, dict] = field(default_factory=dict)  # composed resources by key
    lookups: dict[str, list[dict]] = field(default_factory=dict)  # resolved requirements only
    connection: dict[str, bytes] = field(default_factory=dict)  # observed XR connection details
    desired: dict[str, dict] = field(default_factory=dict)  # earlier steps' composed resources
    desired_connection: dict[str, bytes] = field(default_factory=dict)  # earlier steps' details
    # The time tickets are judged and renewed by; the shell passes its clock's.
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    context: dict = field(default_factory=dict)  # the pipeline context earlier steps passed on


@dataclass
class Desired:
    resource: dict
    ready: bool | None = None


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Result:
    severity: str  # FATAL | WARNING | NORMAL
    message: str
    reason: str | None = None


@dataclass
class StepResult:
    resources: dict[str, Desired] = field(default_factory=dict)
    status_path: str | None = None
    status: dict | None = None
    composite: dict = field(default_factory=dict)  # more XR field paths -> values (patches)
    connection: dict[str, bytes] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    # The result depends on `now` (tickets were judged or renewed), not on the request alone:
    # the same request may need another answer later, so it is not answered from a cache.
    timed: bool = False
    context: dict = field(default_factory=dict)  # keys to set in the pipeline context
    claims: list[str] = field(default_factory=list)  # CLAIMED, ADOPTED, LOST, RELEASED

    @property
    def fatal(self) -> bool:
        return any(r.severity == FATAL for r in self.results)


def fatal(message: str) -> StepResult:
    return StepResult(results=[Result(FATAL, message)])
