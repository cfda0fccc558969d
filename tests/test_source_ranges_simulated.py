"""Source allowlists end to end: the tenant step on the pipeline simulator, with Envoy
Gateway's policy evaluation and the client address as each shard passes it on. A client
reaches a tenant only when the tenant's ranges admit it, at every moment of its life."""

import copy
import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from function import labels
from function.builders.clienttrafficpolicy import proxy_protocol_policy
from tests.factories import NS
from tests.simulator import EnvoyGateway
from tests.world import World

INSIDE, OUTSIDE = "203.0.113.7", "198.51.100.7"
PROBES = (INSIDE, OUTSIDE, "10.0.0.1", "192.0.2.1", "2001:db8::7")  # 10.0.0.1: the node
RANGES = (
    "203.0.113.0/24",
    "198.51.100.7",
    "10.0.0.0/8",  # the nodes' network: admits everyone behind SNAT
    "2001:db8::/32",
    "0.0.0.0/0",
    "300.1.1.1/8",  # invalid: Envoy Gateway would leave the route open
    "010.0.0.0/8",  # invalid for Go
)


class FilteredWorld(World):
    """A World whose tenants carry AppCat's ipFilter and whose data plane is Envoy
    Gateway's: shards made as the pool step makes them for their clientAddress."""

    def __init__(self, **kwargs):
        source = {"fromFieldPath": "spec.parameters.network.ipFilter"}
        super().__init__(sourceRanges=source, **kwargs)
        self.envoy = EnvoyGateway(self.cluster)
        self.filters: dict[str, object] = {}  # the tenant's last valid list
        self.before: dict[str, object] = {}  # the one before, until a round has passed

    def round(self, names=None, *, same_snapshot: bool = False):
        """Composed objects are applied, then the controllers act: the filters hold at
        both moments (in between, a change may not be in force yet: the list before it
        still counts)."""
        plans = self.reconcile(names, same_snapshot=same_snapshot)
        self.check_filters(during=True)
        self.controllers()
        self.before = dict(self.filters)
        self.check_filters()
        return plans

    def controllers(self):
        self.provider.reconcile()
        self.gateways.reconcile()
        self.envoy.reconcile()
        self.provider.reconcile()  # carry the new status into the Objects

    def add_shard(self, index: int, *, mode: str = "ProxyProtocol", **kwargs) -> dict:
        obj = super().add_shard(index, **kwargs)
        name = obj["metadata"]["name"]
        obj = self.cluster.get("gateway.networking.k8s.io/v1", "Gateway", name, NS)
        obj["metadata"]["annotations"][labels.CLIENT_ADDRESS] = mode
        if mode == "ProxyProtocol":
            obj["spec"]["infrastructure"] = {
                "annotations": {"k8s.cloudscale.ch/loadbalancer-pool-protocol": "proxy"}
            }
            self.cluster.create(
                proxy_protocol_policy(
                    name=f"{name}-proxy-protocol", namespace=NS, labels={}, gateway=name
                )
            )
        elif mode == "Local":
            self.envoy.local.add(name)
        self.cluster.update(obj)
        return obj

    def create_tenant(self, name: str, ip_filter=None):
        ref = super().create_tenant(name)
        self.set_filter(name, ip_filter)
        return ref

    def set_filter(self, name: str, ip_filter) -> None:
        """The tenant edits its claim (None: the field is not set)."""
        xr = copy.deepcopy(self.xr(name))
        network = xr["spec"].setdefault("parameters", {}).setdefault("network", {})
        if ip_filter is None:
            network.pop("ipFilter", None)
        else:
            network["ipFilter"] = ip_filter
        self.cluster.update(xr)
        if _valid(ip_filter):
            self.before.setdefault(name, self.filters.get(name, ip_filter))
            self.filters[name] = ip_filter  # what the tenant last asked for that holds

    def reach(self, client: str) -> dict[str, tuple[str, int]]:
        """tenant -> (gateway, port) where a client at `client` reaches it."""
        reached = {}
        for (ns, gateway, port), (_route, backend) in self.gateways.serving().items():
            if self.envoy.connect(client, ns, gateway, port) is not None:
                reached[backend[0].removeprefix("vshn-postgresql-")] = (gateway, port)
        return reached

    def check_filters(self, *, during: bool = False):
        """Every probe reaches a tenant only when that tenant's ranges admit it, and only
        on the port it holds."""
        holders = {
            int(c["metadata"]["labels"][labels.PORT]): c["spec"]["holderIdentity"]
            for c in self.claims()
        }
        for client in PROBES:
            for tenant, (_, port) in self.reach(client).items():
                admitted = admits(self.filters.get(tenant), client) or (
                    during and admits(self.before.get(tenant), client)
                )
                assert admitted, (tenant, client, port, during)
                assert holders.get(port) == self.xr(tenant)["metadata"]["uid"], (tenant, port)


def _valid(ip_filter) -> bool:
    if ip_filter is None:
        return True  # the default, 0.0.0.0/0
    try:
        [_network(entry) for entry in ip_filter]
    except ValueError:
        return False
    return True


def _network(entry: str):
    if "/" not in entry:
        entry += "/128" if ":" in entry else "/32"
    return ipaddress.ip_network(entry, strict=False)


def admits(ip_filter, client: str) -> bool:
    """Whether the tenant's last valid list admits a client: no list asked for yet (only
    invalid ones) admits nobody; an unset field is the default 0.0.0.0/0."""
    networks = [_network(e) for e in (["0.0.0.0/0"] if ip_filter is None else ip_filter)]
    everyone_v4 = ipaddress.ip_network("0.0.0.0/0") in networks
    v6 = [n for n in networks if n.version == 6]
    if not networks or (everyone_v4 and (not v6 or ipaddress.ip_network("::/0") in v6)):
        return True  # the documented "admits everyone": no policy at all
    address = ipaddress.ip_address(client)
    return any(address in n for n in networks)


@pytest.fixture(params=["v2", "v1"])
def world(request):
    w = FilteredWorld(mode=request.param, seed=7)
    yield w
    w.close()


def test_an_office_range_is_reachable_from_the_office_and_never_from_elsewhere(world):
    world.add_shard(1)
    world.create_tenant("pg-office", ["203.0.113.0/24"])
    for _ in range(6):
        world.round()  # checks the filters twice
        assert "pg-office" not in world.reach(OUTSIDE)
    assert world.condition("pg-office") == ("True", "Ready")
    gateway, port = world.reach(INSIDE)["pg-office"]
    assert (gateway, port) == ("postgresql-1", world.port("pg-office"))

    world.set_filter("pg-office", ["203.0.113.0/24", "300.1.1.1/8"])  # a bad entry
    for _ in range(3):
        world.round()
        assert "pg-office" in world.reach(INSIDE)  # the previous filter stays in force
        assert "pg-office" not in world.reach(OUTSIDE)
    assert world.condition("pg-office") == ("False", "InvalidSourceRanges")


def test_a_shard_that_loses_the_client_address_never_carries_a_filtered_tenant(world):
    world.add_shard(1, mode="Unknown")
    world.create_tenant("pg-office", ["10.0.0.0/8"])  # the nodes' network behind SNAT
    for _ in range(6):
        world.round()
        for client in PROBES:
            assert "pg-office" not in world.reach(client)
    assert world.condition("pg-office") == ("False", "ClientAddressNotPreserved")


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    modes=st.lists(st.sampled_from(["ProxyProtocol", "Local", "Unknown"]), min_size=1, max_size=2),
    tenants=st.lists(
        st.one_of(st.none(), st.lists(st.sampled_from(RANGES), max_size=3)),
        min_size=1,
        max_size=4,
    ),
    edits=st.lists(
        st.tuples(
            st.integers(0, 3), st.one_of(st.none(), st.lists(st.sampled_from(RANGES), max_size=3))
        ),
        max_size=3,
    ),
)
def test_every_probe_reaches_a_tenant_only_through_its_ranges(modes, tenants, edits):
    world = FilteredWorld(mode="v2", seed=3)
    try:
        for index, mode in enumerate(modes, start=1):
            world.add_shard(index, mode=mode, capacity=3)
        names = [f"pg-{i}" for i in range(len(tenants))]
        for name, ip_filter in zip(names, tenants, strict=True):
            world.create_tenant(name, ip_filter)
        for number in range(4 + len(edits)):
            if number >= 3 and edits:
                which, ip_filter = edits.pop()
                world.set_filter(names[which % len(names)], ip_filter)
            world.round()  # checks the filters twice
    finally:
        world.close()
