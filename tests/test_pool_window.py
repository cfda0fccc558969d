"""The pool step on a pool bigger than its read budget: it recounts a window of shards per
reconcile (function/poolwindow.py), and every invariant of the full read still holds.

The harness below is a small cluster of the pool's own objects: claims and tenant listener
sets by shard, the shard Gateways as the pool step last wrote them (with the attached
listener sets their controller reports), and the pool's status fed back each reconcile.
"""

import copy
import datetime
import random

import pytest

from function import labels, pool, poolwindow
from function.inputs import GatewayPool
from function.shards import parse_ports
from function.step import StepRequest
from tests.factories import NS, claim, tenant_listener_set, ticket

NOW = datetime.datetime(2026, 12, 2, 10, 0, tzinfo=datetime.UTC)
XR = {"apiVersion": "x/v1", "kind": "XGatewayPool", "metadata": {"name": "postgresql"}}
SLOTS = 9  # capacity 10: nine tenant slots and the shard's own listener
# 50 KiB: one full shard of nine tenants is 9 x 2,400 bytes in v2 (poolwindow.SLOT_BYTES),
# so a window holds two full shards, or one and the audit of another's listener sets.
INPUT = {
    "pool": "postgresql",
    "namespace": NS,
    "gatewayClassName": "envoy-gateway",
    "provider": "exoscale",
    "ports": "10000-10999",
    "hostname": "db{index}.example.ch",
    "minShards": 1,
    "maxShards": 60,
    "headroom": 3,
    "portRest": "0",
    "readBudgetKiB": 50,
}


def spec(**changes) -> GatewayPool:
    return GatewayPool.model_validate({**INPUT, **changes})


class Cluster:
    """The pool's objects and the pool step's last output, as Crossplane would show them."""

    def __init__(self, spec_: GatewayPool):
        self.spec = spec_
        self.now = NOW
        self.objects: list[dict] = []  # claims and tenant listener sets
        self.observed: dict[str, dict] = {}  # gateway-N as written, with its status
        self.status: dict | None = None
        self.calls: list[list[str]] = []  # requirement names of each call, last reconcile
        self.read: list[dict] = []  # every object the last reconcile's lookups returned
        self.serial = 0

    # -- tenants ---------------------------------------------------------------------------

    def slice(self, index: int) -> range:
        start, end = self.spec.slice(index)
        return range(start, end)  # the last port is the shard's own listener

    def taken(self) -> set[int]:
        return {int(o["metadata"]["labels"][labels.PORT]) for o in self.objects}

    def on_shard(self, index: int) -> list[dict]:
        return [o for o in self.claims() if o["metadata"]["labels"][labels.SHARD] == str(index)]

    def claims(self) -> list[dict]:
        return [o for o in self.objects if o["kind"] == "Lease"]

    def add_tenant(self, index: int) -> int | None:
        """A tenant claims the first free port of shard `index` and listens on it."""
        free = [p for p in self.slice(index) if p not in self.taken()]
        if not free:
            return None
        self.place(free[0], index)
        return free[0]

    def add_where_accepting(self) -> int | None:
        """A tenant as the tenant step places one: the lowest shard labelled accepting."""
        for index in sorted(self.gateways()):
            gateway = self.gateways()[index]
            if gateway["metadata"]["labels"][labels.ACCEPTING] == "true":
                port = self.add_tenant(index)
                if port is not None:
                    return port
        return None

    def place(self, port: int, index: int) -> None:
        """A tenant of shard `index` claims `port` and listens on it. An adopted tenant's
        port (the one it already had) may lie in another shard's slice."""
        assert port not in self.taken()
        self.serial += 1
        self.objects.append(claim(port, index, holder=f"uid-{self.serial}"))
        self.objects.append(
            tenant_listener_set(port, index, namespace=f"t{self.serial}", accepted=True)
        )

    def delete_tenant(self, port: int) -> None:
        self.objects = [
            o for o in self.objects if o["metadata"]["labels"].get(labels.PORT) != str(port)
        ]

    # -- the pool step ---------------------------------------------------------------------

    def gateways(self) -> dict[int, dict]:
        return {
            int(key.split("-")[1]): obj
            for key, obj in self.observed.items()
            if key.startswith("gateway-")
        }

    def attached(self, index: int) -> int:
        name = f"{self.spec.pool}-{index}"
        return sum(
            1
            for o in self.objects
            if o["kind"] == "ListenerSet" and o["spec"]["parentRef"]["name"] == name
        )

    def request(self, lookups: dict | None = None, spec_: GatewayPool | None = None):
        xr = copy.deepcopy(XR)
        if self.status is not None:
            xr["status"] = {"pool": copy.deepcopy(self.status)}
        return StepRequest(
            xr=xr, observed=copy.deepcopy(self.observed), lookups=lookups or {}, now=self.now
        )

    def run(self, spec_: GatewayPool | None = None):
        """One reconcile's requirement loop, without applying what it returns."""
        spec_ = spec_ or self.spec
        lookups: dict = {}
        calls = []
        for _ in range(4):
            result = pool.run(spec_, self.request(lookups, spec_))
            wanted = {r.name: r for r in result.requirements}
            calls.append(sorted(wanted))
            if set(wanted) <= set(lookups):
                return result, calls, lookups
            lookups = {
                name: [copy.deepcopy(o) for o in self.objects if r.matches(o)]
                for name, r in wanted.items()
            }
        raise AssertionError(f"requirements never settled: {calls}")

    def report(self) -> None:
        """The Gateway controller: each shard Gateway counts the listener sets on it."""
        for index, gateway in self.gateways().items():
            gateway.setdefault("status", {})["attachedListenerSets"] = self.attached(index)

    def reconcile(self):
        self.report()
        result, self.calls, lookups = self.run()
        self.read = [o for found in lookups.values() for o in found]
        self.observed = {}
        for key, desired in result.resources.items():
            obj = copy.deepcopy(desired.resource)
            if key.startswith("gateway-"):
                index = int(key.split("-")[1])
                obj["status"] = {"attachedListenerSets": self.attached(index)}
            self.observed[key] = obj
        self.status = result.status
        self.now += datetime.timedelta(minutes=1)
        return result

    # -- what a full read would say --------------------------------------------------------

    def truth(self, index: int) -> int:
        return len(self.on_shard(index))

    def entry(self, index: int) -> dict:
        return next(s for s in self.status["shards"] if s["index"] == index)


def filled(
    shards: int,
    spec_: GatewayPool | None = None,
    *,
    last: int = SLOTS,
    adopted: tuple[tuple[int, int], ...] = (),
) -> Cluster:
    """A pool of `shards` full shards (the last with `last` tenants), settled. For each
    (holder, elsewhere) in `adopted`, shard `holder` has, in place of a tenant of its own,
    one adopted on the port it had in shard `elsewhere`'s slice (whose tenant there left)."""
    cluster = Cluster(spec_ or spec())
    for index in range(1, shards + 1):
        for _ in range(SLOTS if index < shards else last):
            cluster.add_tenant(index)
    for holder, elsewhere in adopted:
        port = cluster.slice(elsewhere)[0]
        cluster.delete_tenant(port)
        cluster.delete_tenant(cluster.slice(holder)[0])
        cluster.place(port, holder)  # adopted
    for _ in range(shards + 3):
        cluster.reconcile()
    return cluster


def held_elsewhere(gateway: dict) -> set[int]:
    return set(parse_ports(gateway["metadata"]["annotations"].get(labels.HELD_ELSEWHERE)))


def accepting(cluster: Cluster) -> set[int]:
    return {
        i
        for i, g in cluster.gateways().items()
        if g["metadata"]["labels"][labels.ACCEPTING] == "true"
    }


def test_a_pool_within_the_budget_is_read_whole_every_reconcile():
    cluster = filled(3, spec(readBudgetKiB=900))
    assert cluster.calls[-1] == sorted([pool.CLAIMS, pool.TICKETS, pool.LISTENER_SETS])
    shards = cluster.status["totals"]["shards"]
    assert cluster.status["view"] == {"mode": "Full", "recounted": shards}
    assert all("countedAt" not in s for s in cluster.status["shards"])


def test_what_a_window_reads_does_not_grow_with_the_pool():
    small, large = filled(4), filled(16)
    for cluster in (small, large):
        assert cluster.status["view"]["mode"] == "Window"
        assert not any(name == pool.CLAIMS for name in cluster.calls[-1])  # no pool-wide read
    # Two full shards at most (the accepting one and the audited one, whose listener sets
    # are all read), whatever the number of tenants.
    bound = 2 * SLOTS + SLOTS + SLOTS  # their claims, the audited one's listener sets
    assert len(large.read) <= bound and len(small.read) <= bound
    assert len(large.claims()) == 4 * len(small.claims())
    budget = large.spec.read_budget
    assert large.status["view"]["bytesBudgeted"] <= budget + 2 * SLOTS * 2_400


def test_the_window_is_the_same_in_every_call_of_a_reconcile():
    cluster = filled(10)
    for _ in range(12):
        cluster.add_where_accepting()
        cluster.reconcile()
        # The tickets first (what they take of the budget, the window may not), then
        # the same window in every call.
        tickets, first, *rest = cluster.calls
        assert tickets == [pool.TICKETS]
        assert all(call == first for call in rest), cluster.calls


def test_every_shard_is_recounted_within_as_many_reconciles_as_the_pool_has_shards():
    cluster = filled(12)
    cluster.status = None  # the pool's status lost: nothing says when a shard was counted
    reconciles = 0
    while not all("countedAt" in s for s in (cluster.status or {"shards": [{}]})["shards"]):
        cluster.reconcile()
        reconciles += 1
        assert reconciles <= 12, cluster.status["shards"]
    assert cluster.status["view"]["oldestCount"] != ""


def test_a_shard_outside_the_window_keeps_its_count_and_never_accepts():
    cluster = filled(10, last=4)
    window = {s["index"] for s in cluster.status["shards"] if s["countedAt"] == _at(cluster)}
    carried = set(cluster.gateways()) - window
    assert carried
    for index in carried:
        gateway = cluster.gateways()[index]
        assert gateway["metadata"]["labels"][labels.ACCEPTING] == "false"
        assert gateway["metadata"]["annotations"][labels.USED] == str(cluster.truth(index))
    assert accepting(cluster) <= window


def test_an_unresolved_lookup_in_a_window_changes_nothing():
    cluster = filled(10)
    before = copy.deepcopy(cluster.observed)
    first = pool.run(cluster.spec, cluster.request({}))
    assert {k: d.resource for k, d in first.resources.items()} == {
        k: {kk: vv for kk, vv in v.items() if kk != "status"} for k, v in before.items()
    }
    _, _, lookups = cluster.run()
    missing_one = dict(lookups)
    missing_one.pop(next(n for n in lookups if n.startswith(f"{pool.CLAIMS}-shard-")))
    partial = pool.run(cluster.spec, cluster.request(missing_one))
    assert set(partial.resources) == set(before)
    assert partial.status == cluster.status


def test_deletions_on_a_full_shard_are_found_through_its_gateways_attached_count():
    cluster = filled(10)
    counted = {s["index"]: s["countedAt"] for s in cluster.status["shards"]}
    # The full shard counted last: the rotation would come to it last.
    target = max((c, i) for i, c in counted.items() if cluster.entry(i)["used"] == SLOTS)[1]
    for lease in cluster.on_shard(target)[:4]:
        cluster.delete_tenant(int(lease["metadata"]["labels"][labels.PORT]))
    cluster.reconcile()
    assert cluster.entry(target)["countedAt"] != counted[target]
    assert cluster.entry(target)["used"] == SLOTS - 4
    # Counted while it accepted nobody: its free slots are a lower bound the pool keeps.
    assert cluster.entry(target)["free"] == 4


def test_a_shard_goes_only_right_after_a_recount_found_it_empty():
    cluster = filled(10, last=1)
    for lease in cluster.on_shard(3)[:4]:  # room for the headroom without the top shard
        cluster.delete_tenant(int(lease["metadata"]["labels"][labels.PORT]))
    top = max(cluster.gateways())
    [lease] = cluster.on_shard(top)
    port = int(lease["metadata"]["labels"][labels.PORT])
    # Its count on the Gateway says empty, but a tenant is there: a recount finds it.
    cluster.observed[f"gateway-{top}"]["metadata"]["annotations"][labels.USED] = "0"
    for _ in range(4):
        cluster.reconcile()
        assert top in cluster.gateways()
    assert cluster.entry(top)["used"] == 1
    # The tenant's listener set loses its labels (a Namespaced tenant may edit its own):
    # no lookup finds it, but its Gateway still counts it attached.
    cluster.delete_tenant(port)
    edited = tenant_listener_set(port, top, namespace="edited", accepted=True, pool="elsewhere")
    edited["spec"]["parentRef"]["name"] = f"postgresql-{top}"
    cluster.objects.append(edited)
    for _ in range(4):
        cluster.reconcile()
        assert top in cluster.gateways()
    cluster.objects.remove(edited)  # really gone now
    for _ in range(4):
        cluster.reconcile()
    assert top not in cluster.gateways()


@pytest.mark.parametrize("seed", range(3))
def test_a_random_history_keeps_every_invariant_of_the_full_read(seed):
    rng = random.Random(seed)
    cluster = filled(12, last=5, adopted=((1, 5), (4, 2), (6, 9)))
    behind = windows = 0  # reconciles the window's growth is behind a full read's
    for step in range(60):
        for _ in range(rng.choice([0, 0, 1, 3, 9])):
            if rng.random() < 0.1:
                # A tenant that read an older "accepting" hint lands on any shard.
                cluster.add_tenant(rng.choice(sorted(cluster.gateways())))
            else:
                cluster.add_where_accepting()
        leaving = min(len(cluster.claims()), rng.choice([0, 0, 2, 6]))
        for lease in rng.sample(cluster.claims(), k=leaving):
            cluster.delete_tenant(int(lease["metadata"]["labels"][labels.PORT]))
        full, _, _ = cluster.run(spec(readBudgetKiB=65536))
        held = {int(o["metadata"]["labels"][labels.SHARD]) for o in cluster.claims()}
        result = cluster.reconcile()
        shards = set(cluster.gateways())
        # A Gateway that carries a claim or a listener is never removed.
        assert held <= shards, (step, held - shards)
        # Hints are conservative: an accepting shard has a free slot now, and offers no
        # more than a full read would (a port adopted on a shard outside the window stays
        # held on the shard whose slice has it).
        full_free = {s["index"]: s["free"] for s in full.status["shards"]}
        full_held = {
            int(key.split("-")[1]): held_elsewhere(desired.resource)
            for key, desired in full.resources.items()
            if key.startswith("gateway-")
        }
        for index in accepting(cluster):
            assert cluster.truth(index) < SLOTS, (step, index)
            assert cluster.entry(index)["free"] <= full_free.get(index, SLOTS), (step, index)
            gateway = cluster.gateways()[index]
            assert held_elsewhere(gateway) >= full_held.get(index, set()), (step, index)
        # Growth is never later than a full read's by more than one reconcile.
        wanted = len([k for k in full.resources if k.startswith("gateway-")])
        behind = behind + 1 if len(shards) < wanted else 0
        assert behind <= 1, (step, len(shards), wanted)
        # Carried counts are never below what the Gateway reports attached.
        for entry in result.status["shards"]:
            assert entry["used"] >= 0
        windows += cluster.status["view"]["mode"] == "Window"
    assert windows >= 50  # the pool stayed beyond the budget (a full read otherwise)


def _at(cluster: Cluster) -> str:
    """The countedAt of the last reconcile."""
    return poolwindow.format_time(cluster.now - datetime.timedelta(minutes=1))


def test_a_port_freed_on_a_shard_outside_the_window_rests_from_its_next_recount():
    cluster = filled(10, spec(portRest="1h"))
    latest = _at(cluster)
    carried = [s["index"] for s in cluster.status["shards"] if s["countedAt"] != latest]
    target = max(i for i in carried if cluster.entry(i)["used"] == SLOTS)
    [lease, *_] = cluster.on_shard(target)
    cluster.delete_tenant(int(lease["metadata"]["labels"][labels.PORT]))
    cluster.reconcile()  # its Gateway reports one listener set fewer: recounted now
    assert cluster.entry(target)["countedAt"] == _at(cluster)
    assert cluster.entry(target)["used"] == SLOTS - 1
    assert cluster.entry(target)["resting"] == 1  # its record was kept while carried
    assert cluster.entry(target)["free"] == 0


def recounted(cluster: Cluster) -> set[int]:
    """The shards the last reconcile recounted."""
    return {s["index"] for s in cluster.status["shards"] if s.get("countedAt") == _at(cluster)}


def test_a_port_adopted_into_another_slice_stays_held_while_its_shard_is_carried():
    """Shard 1 holds an adopted tenant on a port of shard 5's slice. A full read keeps that
    port off shard 5; a window that recounts shard 5 without shard 1 must too."""
    cluster = filled(10, last=4, adopted=((1, 5),))
    port = cluster.slice(5)[0]
    assert cluster.status["view"]["mode"] == "Window"
    assert cluster.entry(1)[poolwindow.OUTSIDE] == str(port)
    alone = 0
    for _ in range(20):
        result = cluster.reconcile()
        alone += 5 in recounted(cluster) and 1 not in recounted(cluster)
        assert held_elsewhere(cluster.gateways()[5]) == {port}
        assert cluster.entry(5)["free"] == 0
        assert 5 not in accepting(cluster)
        # Reported every reconcile, as a full read does, not only when shard 1 is read.
        assert cluster.status["claimsOutsideSlice"] == [f"tcp-postgresql-{port}"]
        assert [r.reason for r in result.results] == ["ClaimOutsideSlice"]
    assert alone  # shard 5 was recounted without shard 1: only the record held the port


def test_a_new_shard_whose_own_port_an_adopted_claim_holds_is_refused_in_a_window():
    """Shard 11's Gateway would listen on a port an adopted tenant of shard 1 holds: a full
    read refuses the shard (SliceConflict), and so does every window, with shard 1 read
    or not."""
    cluster = Cluster(spec())
    for index in range(1, 11):
        for _ in range(SLOTS if index < 10 else 8):  # one slot free: below the headroom
            cluster.add_tenant(index)
    cluster.delete_tenant(cluster.slice(1)[0])
    cluster.place(cluster.spec.slice(11)[1], 1)  # adopted: shard 11's own port
    without_shard_1 = 0
    for _ in range(12):
        result = cluster.reconcile()
        without_shard_1 += 1 not in recounted(cluster)
        assert set(cluster.gateways()) == set(range(1, 11))
        assert [c.reason for c in result.conditions] == ["SliceConflict"]
    assert cluster.status["view"]["mode"] == "Window" and without_shard_1


@pytest.mark.parametrize(
    "change", [{"capacity": 8}, {"ports": "20000-20999"}, {"maxShards": 4}], ids=str
)
def test_an_adopted_port_stays_held_after_the_operator_changes_the_pool(change):
    """Slices are recorded per shard: a lowered capacity, new ports or a lower maxShards
    shape new shards only, so the port adopted into shard 5's slice stays held there."""
    cluster = filled(10, last=4, adopted=((1, 5),))
    port = cluster.slice(5)[0]
    cluster.spec = spec(**change)
    for _ in range(12):
        cluster.reconcile()
        assert held_elsewhere(cluster.gateways()[5]) == {port}
        assert 5 not in accepting(cluster)
        assert cluster.entry(1)[poolwindow.OUTSIDE] == str(port)
    assert cluster.status["view"]["mode"] == "Window"


@pytest.mark.parametrize("loss", ["status-lost", "written-before-the-record"])
def test_without_a_record_a_recounted_shard_keeps_the_ports_it_marked_held(loss):
    cluster = filled(10, last=4, adopted=((1, 5),))
    port = cluster.slice(5)[0]
    if loss == "status-lost":
        cluster.status = None
    else:
        for entry in cluster.status["shards"]:
            del entry[poolwindow.OUTSIDE]
    for _ in range(20):
        cluster.reconcile()
        assert held_elsewhere(cluster.gateways()[5]) == {port}
        assert cluster.entry(5)["free"] == 0
    assert all(poolwindow.OUTSIDE in s for s in cluster.status["shards"])


def test_a_port_adopted_into_another_slice_is_freed_there_once_its_tenant_is_gone():
    cluster = filled(10, last=4, adopted=((1, 5),))
    port = cluster.slice(5)[0]
    cluster.delete_tenant(port)
    reconciles = 0
    while held_elsewhere(cluster.gateways()[5]) or cluster.entry(5)["free"] != 1:
        cluster.reconcile()
        reconciles += 1
        # Within a recount cycle: shard 1 reports a listener set fewer, then shard 5.
        assert reconciles <= len(cluster.gateways()), cluster.entry(5)
    assert cluster.entry(1)[poolwindow.OUTSIDE] == ""


def test_a_squatters_listener_set_is_found_by_the_audit_and_stays_reported():
    cluster = filled(10, spec(readBudgetKiB=80))  # room for an audit beside the counts
    squatter = tenant_listener_set(10025, 3, namespace="intruder", accepted=True)
    squatter["metadata"]["labels"] = {}  # nothing of the pool's: no count lookup finds it
    cluster.objects.append(squatter)
    found = None
    for reconcile in range(1, 16):
        cluster.reconcile()
        if cluster.status["listenerDrift"]["foreign"]:
            found = reconcile
            break
    assert cluster.status["view"]["mode"] == "Window"
    assert found is not None, [s.get("listenerDrift") for s in cluster.status["shards"]]
    assert cluster.entry(3)["listenerDrift"]["foreign"] == 1
    for _ in range(3):  # shards audited before keep what their audit found
        cluster.reconcile()
        assert cluster.entry(3)["listenerDrift"] == {
            "attached": SLOTS + 1,
            "foreign": 1,
            "unclaimed": 0,
            "unattached": 0,
            "refused": 0,
            "noAddress": True,
        }


@pytest.mark.parametrize(
    "damage",
    [
        {"countedAt": "yesterday", "attachedAtCount": -3, "placed": "many", "auditedAt": 7},
        {"countedAt": None, "attachedAtCount": 1e30, "placed": 3.5, "auditedAt": []},
        {"index": "one"},
        {"index": True},
    ],
    ids=["words", "odd-numbers", "index-word", "index-bool"],
)
def test_a_damaged_status_costs_a_recount_never_a_shard(damage):
    """The pool's status is only ever written by the pool step; edited by hand, what cannot
    be read counts as never counted (recounted first), and nothing is lost."""
    cluster = filled(10)
    held = {int(o["metadata"]["labels"][labels.SHARD]) for o in cluster.claims()}
    for entry in cluster.status["shards"]:
        entry.update(damage)
    cluster.observed["gateway-4"]["metadata"]["annotations"][labels.FREE] = "-1"
    cluster.observed["gateway-5"]["metadata"]["annotations"][labels.USED] = "lots"
    for _ in range(12):
        result = cluster.reconcile()
        assert not [r for r in result.results if r.severity == "Fatal"]
        assert held <= set(cluster.gateways())
        for index in accepting(cluster):
            assert cluster.truth(index) < SLOTS
    assert all("countedAt" in s for s in cluster.status["shards"])
    assert cluster.entry(5)["used"] == SLOTS


def test_the_tickets_of_a_burst_shrink_the_window_not_the_request():
    cluster = filled(10)
    cluster.reconcile()
    calm = sum(1 for name in cluster.calls[-1] if name.startswith(f"{pool.CLAIMS}-shard-"))
    created = cluster.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    # 40 tenants in line: 40 x 1,100 bytes of the 50 KiB budget.
    cluster.objects += [ticket(f"waiting-{n}", created) for n in range(40)]
    shards = len(cluster.gateways())
    cluster.reconcile()
    burst = [name for name in cluster.calls[-1] if name.startswith(f"{pool.CLAIMS}-shard-")]
    assert len(burst) < calm
    spent = cluster.status["view"]["bytesBudgeted"] + 40 * poolwindow.TICKET_BYTES[False]
    assert spent <= cluster.spec.read_budget + SLOTS * poolwindow.CLAIM_BYTES[False]
    assert cluster.status["waiting"] == 40
    assert len(cluster.gateways()) >= shards + 40 // SLOTS  # grown for the line at once
