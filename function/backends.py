"""The backend Service found by its labels, for Services no template can name (a Helm
chart's fullname rule: `<release>-ssh` when the release name contains the chart's name,
else `<release>-<chart>-ssh`).

Crossplane v1.x label lookups span every namespace, and whoever may create Services
somewhere may label them as they like: only a Service in the backend namespace counts, so
the route never points outside it. There, the platform's chart writes the Service (a
Namespaced XR's tenant owns its namespace, and can only point its own route at its own
Service).
"""

from dataclasses import dataclass

from function import fieldpath
from function.requirement import Requirement


@dataclass(frozen=True)
class Found:
    service: str | None  # None: not exactly one Service matches (problem says why)
    problem: str | None = None


def requirement(prefix: str, namespace: str, labels: dict[str, str]) -> Requirement:
    return Requirement(f"{prefix}-backend-service", "v1", "Service", dict(labels), namespace)


def find(wanted: Requirement, lookups: dict[str, list[dict]], port: int) -> Found:
    """The one Service in the wanted namespace with the wanted labels and port."""
    services = lookups.get(wanted.name)
    described = (
        f"Service labelled {_labels(wanted.match_labels)} with port {port} in namespace "
        f"{wanted.namespace}"
    )
    if services is None:
        return Found(None, f"looking up the {described}")
    names = sorted(
        name
        for obj in services
        if wanted.matches(obj)  # v1.x lookups ignore the namespace: check it here
        and _has_port(obj, port)
        and (name := fieldpath.text(obj, "metadata.name"))
    )
    if not names:
        return Found(None, f"no {described} yet")
    if len(names) > 1:
        return Found(
            None, f"{len(names)} Services match ({', '.join(names)}): want one {described}"
        )
    return Found(names[0])


def _has_port(service: dict, port: int) -> bool:
    for entry in fieldpath.items(service, "spec.ports"):
        number = entry.get("port") if isinstance(entry, dict) else None
        if isinstance(number, int | float) and not isinstance(number, bool) and number == port:
            return True
    return False


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
