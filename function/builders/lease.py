"""Leases: the claim, whose name locks one port of a pool, and the waiting tenant's ticket."""

from function import labels
from function.builders import metadata
from function.claims import LEASE_API
from function.names import label_value


def claim(
    *,
    name: str,
    namespace: str,
    pool: str,
    shard: int,
    port: int,
    gateway: str,
    hostname: str | None,
    owner: str,
    holder: str,
    blocked: str | None = None,
    served: bool = False,
) -> dict:
    claim_labels = {
        labels.POOL: pool,
        labels.SHARD: str(shard),
        labels.PORT: str(port),
        labels.OWNER: label_value(owner),
        labels.ROLE: labels.CLAIM_ROLE,
        # Static shards are found by their Gateway's name, not their position in a list.
        labels.GATEWAY: label_value(gateway),
    }
    annotations = {labels.GATEWAY: gateway, labels.OWNER_UID: holder}
    if hostname:
        annotations[labels.HOSTNAME] = hostname
    if blocked:
        annotations[labels.BLOCKED] = blocked
    if served:
        annotations[labels.PUBLISHED] = "true"
    return {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": metadata(name, namespace, claim_labels, annotations),
        # The holder is the XR's UID: a claim that survives its XR's name being reused by a
        # new XR is not mistaken for the new XR's.
        "spec": {"holderIdentity": holder},
    }


def ticket(
    *, name: str, namespace: str, pool: str, owner: str, holder: str, renewed: str, ttl: int
) -> dict:
    """A place in the pool's queue of tenants waiting for a port (function/tickets.py): a
    lease its holder renews (`renewed`, a MicroTime) while it waits, expired `ttl` seconds
    after its last renewal."""
    ticket_labels = {
        labels.POOL: pool,
        labels.OWNER: label_value(owner),
        labels.ROLE: labels.TICKET_ROLE,
    }
    return {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": metadata(name, namespace, ticket_labels, {labels.OWNER_UID: holder}),
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl, "renewTime": renewed},
    }
