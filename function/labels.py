"""Labels and annotations that make up the pool's shared state in Kubernetes.

Shard Gateways and claims are found by these labels; nothing else is stored anywhere.
"""

PREFIX = "tcp.fn.servala.io"

POOL = f"{PREFIX}/pool"
SHARD = f"{PREFIX}/shard"
ACCEPTING = f"{PREFIX}/accepting"
PORT = f"{PREFIX}/port"
OWNER = f"{PREFIX}/owner"
ROLE = f"{PREFIX}/role"  # "claim" on claims: lookups select on it, so wrapped Gateways,
# listeners and routes (which carry the pool label too) never come back as claims
CLAIM_ROLE = "claim"
TICKET_ROLE = "ticket"  # a tenant waiting for a port (function/tickets.py)
# On a Namespaced XR's listener set: it holds no claim, its listener is its slot. Claim
# views select on it, so they read these and not every cluster tenant's listener set.
PLACED_ROLE = "placed"
# A listener set on a blocked claim's port that no route binds to: its Gateway's report
# says whether the port is still taken (function/tenant.py, _probe).
PROBE_ROLE = "probe"

HOSTNAME = f"{PREFIX}/hostname"
PORTS = f"{PREFIX}/ports"
CAPACITY = f"{PREFIX}/capacity"
USED = f"{PREFIX}/used"
GATEWAY = f"{PREFIX}/gateway"
# On a shard Gateway: ports of its slice that claims of other shards hold (an adopted port may
# lie outside its shard's slice). The pool step writes it; tenants never claim those ports.
HELD_ELSEWHERE = f"{PREFIX}/held-elsewhere"
# On a shard Gateway of a pool recounted a window at a time: its free slots at its last
# recount, written only when it accepted no tenant then (function/poolwindow.py).
FREE = f"{PREFIX}/free"
OWNER_UID = f"{PREFIX}/owner-uid"
# On a shard Gateway: how its load balancer keeps the client's address (ProxyProtocol, Local
# or Unknown). A tenant with a source allowlist gets a route only where it is kept.
CLIENT_ADDRESS = f"{PREFIX}/client-address"
# On a claim whose port an older, foreign listener took before the tenant's: why. The claim
# stays (the port stays taken, the slot counted) but is never the tenant's allocation.
BLOCKED = f"{PREFIX}/blocked"
# On a claim whose holder's listener the Gateway accepted: the port is published from then
# on, even when the XR is read from before that (its status lags; the claim is current).
PUBLISHED = f"{PREFIX}/published"

# On a Namespace, set by the platform (never by a tenant): ListenerSets in it may attach to
# the shard Gateways. The GatewayPool's default allowedListeners selects on it.
LISTENER_NAMESPACE = f"{PREFIX}/listener-namespace"

NAMESPACE_NAME = "kubernetes.io/metadata.name"
# On a shard Gateway, the record of freed ports that rest before reuse (function/resting.py):
# how long they rest, the ports taken when the pool step last looked, the ports freed since.
PORT_REST = f"{PREFIX}/port-rest"
PORTS_SEEN = f"{PREFIX}/ports-seen"
PORTS_FREED = f"{PREFIX}/ports-freed"
