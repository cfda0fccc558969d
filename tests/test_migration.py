"""Moving AppCat's live tenants from its webhook to this function without a port change,
while both allocators run side by side (Crossplane v1.20, everything wrapped)."""

import random

from tests.appcat import AppCatFunction, Webhook
from tests.simulator import Crossplane, Step
from tests.world import XR_API, XR_KIND, World

APPCAT_RESOURCES = {
    role: {"key": f"{{metadata.name}}-{suffix}", "name": "{metadata.name}",
           "objectName": f"{{metadata.name}}-{suffix}"}
    for role, suffix in (("listenerSet", "xls"), ("route", "tcproute"),
                         ("networkPolicy", "gw-netpol"), ("referenceGrant", "refgrant"))
}  # fmt: skip


def appcat_world() -> tuple[World, Crossplane]:
    """Shards postgresql-1 and -2, AppCat's function in its own Crossplane, its webhook
    admitting XListenerSets."""
    world = World(
        mode="v1",
        flavour="v1.4",
        respectLegacyAllocations=True,
        resources=APPCAT_RESOURCES,
    )
    for index in (1, 2):
        world.add_shard(index, capacity=100)
    Webhook(world.cluster).install()
    legacy = Crossplane(
        world.cluster,
        mode="v1",
        pipeline=[Step("appcat", AppCatFunction())],
        rng=random.Random(7),
    )
    return world, legacy


def legacy_tenants(world: World, legacy: Crossplane, names: list[str]):
    refs = []
    for name in names:
        world.cluster.ensure_namespace(f"vshn-postgresql-{name}", {})
        refs.append(legacy.create_xr(XR_API, XR_KIND, name, spec={"parameters": {}}))
    for _ in range(3):
        for ref in refs:
            legacy.reconcile(ref)
        world.controllers()
    return refs


def listener_port(world: World, name: str) -> int:
    xls = world.cluster.get(
        "gateway.networking.x-k8s.io/v1alpha1", "XListenerSet", name, f"vshn-postgresql-{name}"
    )
    return xls["spec"]["listeners"][0]["port"]


def everything_of(world: World, name: str) -> dict[tuple, str]:
    """Every object of a tenant by identity -> UID: the Objects and what they wrap."""
    ns = f"vshn-postgresql-{name}"
    found = {}
    for key in (f"{name}-xls", f"{name}-tcproute", f"{name}-gw-netpol"):
        obj = world.cluster.get("kubernetes.crossplane.io/v1alpha2", "Object", key)
        found[("Object", key)] = obj["metadata"]["uid"]
    for api, kind in (
        ("gateway.networking.x-k8s.io/v1alpha1", "XListenerSet"),
        ("gateway.networking.k8s.io/v1alpha2", "TCPRoute"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ):
        found[(kind, name)] = world.cluster.get(api, kind, name, ns)["metadata"]["uid"]
    return found


def test_webhook_tenants_move_to_the_function_without_a_port_change():
    world, legacy = appcat_world()
    old = [f"old-{i:02d}" for i in range(30)]
    old_refs = legacy_tenants(world, legacy, old)
    ports_before = {name: listener_port(world, name) for name in old}
    assert sorted(ports_before.values()) == list(range(10000, 10030))

    # 30 new tenants allocated by the function while the webhook's allocations stand.
    new = [f"new-{i:02d}" for i in range(30)]
    for name in new:
        world.create_tenant(name)
    world.settle(4, new)
    new_ports = {world.port(n) for n in new}
    assert None not in new_ports and not new_ports & set(ports_before.values())

    # The webhook stays on: five more tenants still get ports from it, none of ours.
    late = [f"late-{i}" for i in range(5)]
    late_refs = legacy_tenants(world, legacy, late)
    ports_before |= {name: listener_port(world, name) for name in late}
    assert not {ports_before[n] for n in late} & new_ports

    # Switch: the old tenants' composition now runs this function.
    objects_before = {name: everything_of(world, name) for name in ports_before}
    for ref in old_refs + late_refs:
        world.tenants[ref.name] = ref
    world.settle(4)

    for name, port in ports_before.items():
        assert world.port(name) == port, name
        assert listener_port(world, name) == port, name
        assert world.condition(name) == ("True", "Ready"), name
        assert everything_of(world, name) == objects_before[name], name  # nothing recreated
    world.check()
    # The data path: every port goes to its own tenant's Service.
    traffic = world.traffic()
    for name in [*ports_before, *new]:
        gateway = ("tcp-gateways", "postgresql-1", world.port(name))
        assert traffic[gateway][0] == f"vshn-postgresql-{name}", name


def orphaned_leases(world: World) -> list[str]:
    """The webhook's Leases whose holder no longer listens on their port: AppCat's
    allocator reclaims a Lease only once its holder is gone, so these lock a port for good."""
    orphaned = []
    for lease in world.cluster.list("coordination.k8s.io/v1", "Lease", "tcp-gateways"):
        name = lease["metadata"]["name"]
        if not name.startswith("tcp-port-"):
            continue
        namespace, _, holder = lease["spec"]["holderIdentity"].partition("/")
        xls = world.cluster.get(
            "gateway.networking.x-k8s.io/v1alpha1", "XListenerSet", holder, namespace
        )
        ports = {int(ls["port"]) for ls in (xls or {}).get("spec", {}).get("listeners", [])}
        if int(name.removeprefix("tcp-port-")) not in ports:
            orphaned.append(name)
    return orphaned


def test_a_takeover_right_after_the_webhooks_allocation_keeps_the_port():
    world, legacy = appcat_world()
    legacy_tenants(world, legacy, ["old-00"])  # an older tenant: the next port is 10001
    world.cluster.ensure_namespace("vshn-postgresql-fresh", {})
    ref = legacy.create_xr(XR_API, XR_KIND, "fresh", spec={"parameters": {}})
    legacy.reconcile(ref)  # AppCat composes port 0
    world.provider.reconcile()  # the webhook gives 10001 when the XListenerSet is created
    xls = world.cluster.get("kubernetes.crossplane.io/v1alpha2", "Object", "fresh-xls")
    spec_listener = xls["spec"]["forProvider"]["manifest"]["spec"]["listeners"][0]
    assert spec_listener["port"] == 0 and listener_port(world, "fresh") == 10001

    world.tenants["fresh"] = ref  # the switch, before AppCat reconciles again
    world.settle(4, ["fresh"])
    assert world.port("fresh") == 10001
    assert listener_port(world, "fresh") == 10001
    assert world.condition("fresh") == ("True", "Ready")
    assert orphaned_leases(world) == []
