"""Claims: the Lease (or provider-kubernetes Object wrapping it) that locks one port of a pool.

The claim's *name* carries pool and port, so the API server's rule "one name, one controller"
is the lock: two XRs that pick the same port cannot both own the claim.
"""

import re
from dataclasses import dataclass

from function import fieldpath, labels
from function.names import fit

LEASE_API = "coordination.k8s.io/v1"
OBJECT_API = "kubernetes.crossplane.io/v1alpha2"
_PORT_SUFFIX = re.compile(r"-(\d{1,5})$")


def claim_name(pool: str, port: int) -> str:
    return fit(f"tcp-{pool}-{port}")


@dataclass(frozen=True, order=True)
class Claim:
    name: str
    port: int
    shard: int | None
    holder: str | None
    gateway: str | None = None
    hostname: str | None = None
    blocked: str | None = None  # why the holder cannot use the port (labels.BLOCKED)
    pool: str | None = None  # its label tcp.fn.servala.io/pool
    served: bool = False  # its port was published (labels.PUBLISHED)


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def elsewhere(obj: dict, namespace: str) -> bool:
    """A Lease outside the pool's namespace: Crossplane v1.x label lookups span every
    namespace (provider-kubernetes Objects are cluster-scoped)."""
    return obj.get("kind") == "Lease" and fieldpath.get(obj, "metadata.namespace", None) != (
        namespace
    )


def inner_manifest(obj: dict) -> dict:
    """The wrapped object of a provider-kubernetes Object as it was desired."""
    return fieldpath.mapping(obj, "spec.forProvider.manifest")


def lease_of(obj: object) -> dict | None:
    """The Lease itself, or the Lease an Object wraps; None for anything else."""
    if not isinstance(obj, dict):
        return None
    lease = inner_manifest(obj) if obj.get("kind") == "Object" else obj
    return lease if lease.get("kind") == "Lease" else None


def parse(obj: dict) -> Claim | None:
    """Read a claim from a Lease or an Object wrapping one; None if it names no port."""
    lease = lease_of(obj)
    if lease is None:
        return None
    meta_labels, annotations = {}, {}
    for source in (lease, obj):  # an Object's own labels win over its manifest's
        meta_labels.update(fieldpath.mapping(source, "metadata.labels"))
        annotations.update(fieldpath.mapping(source, "metadata.annotations"))
    name = fieldpath.text(obj, "metadata.name") or ""

    port = _whole(meta_labels.get(labels.PORT))
    if port is None:
        # A claim with a damaged port label still locks the port its name carries.
        match = _PORT_SUFFIX.search(name)
        port = int(match.group(1)) if match else None
    if port is None or not 1 <= port <= 65535:
        return None
    holder = fieldpath.get(lease, "spec.holderIdentity", None)
    hostname = annotations.get(labels.HOSTNAME)
    gateway = annotations.get(labels.GATEWAY)
    blocked = annotations.get(labels.BLOCKED)
    pool = meta_labels.get(labels.POOL)
    return Claim(
        name=name,
        port=port,
        shard=_whole(meta_labels.get(labels.SHARD)),
        holder=holder if isinstance(holder, str) else None,
        gateway=gateway if isinstance(gateway, str) else None,
        hostname=hostname if isinstance(hostname, str) else None,
        blocked=blocked if isinstance(blocked, str) and blocked else None,
        pool=pool if isinstance(pool, str) else None,
        served=annotations.get(labels.PUBLISHED) == "true",
    )
