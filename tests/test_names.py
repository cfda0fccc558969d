"""How the objects of an XR are named: readable where that is safe, never another XR's, and
never changed once composed."""

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from function.builders.lease import claim as build_claim
from function.builders.object import wrap
from function.inputs import TCPAccess
from function.names import SHORTENED, fit, is_dns_label, owned
from tests.factories import NS, gateway, run_tenant
from tests.world import tenant_input

UID = "8d6c5a37-2c1e-4b8e-9f5e-0d1f0c2a7b61"
OTHER_UID = "f0e1d2c3-b4a5-4968-8776-5a4b3c2d1e0f"
KEY = "tcp-listenerset"


def test_a_short_valid_name_is_kept_as_rendered():
    assert owned("pg-abc12-tcp-listenerset", UID, KEY) == "pg-abc12-tcp-listenerset"
    assert owned("pg-abc12", UID, "pg-abc12-xls") == "pg-abc12"  # AppCat's names stay


def test_a_long_name_is_cut_and_ends_in_a_hash_of_the_uid_and_key():
    long = "analytics-production-postgresql-primary-eu-west-1-replica-x7k2p-tcp-listenerset"
    name = owned(long, UID, KEY)
    assert is_dns_label(name) and name.count(SHORTENED) == 1
    assert name.startswith("analytics-production-postgresql-primary")
    assert owned(long, UID, KEY) == name  # the same on every reconcile
    assert owned(long, OTHER_UID, KEY) != name  # another XR: another hash
    assert owned(long, UID, "tcp-route") != name  # another object of the XR: another hash


def test_a_name_of_the_shortened_shape_is_always_shortened():
    """A tenant that names its XR like another XR's shortened object gets a name of its own."""
    victim = owned("a" * 80, UID, KEY)
    assert owned(victim, OTHER_UID, KEY) != victim
    assert SHORTENED not in owned(victim, OTHER_UID, KEY).split(SHORTENED)[0]
    assert owned("db--x7k2p", UID, KEY) != "db--x7k2p"  # any double hyphen


@pytest.mark.parametrize(
    "name",
    ["tcp-postgresql-10001", "tcp-postgresql-wait-0123456789", fit(f"tcp-{'p' * 63}-10001")],
    ids=["claim", "ticket", "long-pool-claim"],
)
def test_a_name_that_reads_like_a_claim_or_ticket_is_never_kept(name):
    """Claims and tickets are wrapped in Objects too, and Object names are cluster-wide."""
    assert owned(name, UID, KEY) != name


def test_a_name_with_no_alphanumerics_still_gets_a_valid_name():
    name = owned("...", UID, KEY)
    assert is_dns_label(name) and name.startswith("x" + SHORTENED)


ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
# What a template renders from an XR name: lowercase alphanumerics, '-' and '.', up to the
# 253 characters of a Kubernetes object name (invalid ends too: a template adds to them).
object_names = st.text(ALNUM + "-.", min_size=1, max_size=253)
uids = st.uuids().map(str)


@st.composite
def name_pairs(draw) -> tuple[str, str]:
    """A victim's rendered name, and what an attacker renders: anything, the victim's name
    as an earlier version cut it, the victim's object name, or one that differs only after
    the cut or by a dot."""
    victim = draw(st.one_of(object_names, st.just("a" * 253)))
    victim_uid = draw(uids)
    attacker = draw(
        st.one_of(
            object_names,
            st.just(fit(victim)),
            st.just(owned(victim, victim_uid, KEY)),
            st.just(victim[:-1] + ("b" if victim[-1] == "a" else "a")),
            st.just(victim.replace("-", ".").strip(".")),
            st.just(owned(victim, victim_uid, KEY) + "-x"),
        )
    )
    return victim, victim_uid, attacker


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(pair=name_pairs(), attacker_uid=uids, key=st.sampled_from([KEY, "x-xls", "tcp-probe-1"]))
def test_two_xrs_never_get_one_name(pair, attacker_uid, key):
    victim, victim_uid, attacker = pair
    if attacker_uid == victim_uid or attacker == victim:
        return  # one UID is one XR; one name is one XR (of a kind) at a time
    mine, theirs = owned(victim, victim_uid, key), owned(attacker, attacker_uid, key)
    assert is_dns_label(mine) and is_dns_label(theirs)
    assert mine != theirs, (victim, attacker)


# -- an upgrade renames nothing -------------------------------------------------------------

OLD_NAME = "analytics-production-postgresql-primary-eu-west-1-replica-x7k2p"[:58] + "-q7x"
PORT, BLOCKED_PORT = 10003, 10007


def old_names(xr_name: str) -> dict[str, tuple[str, str]]:
    """key -> (name, Object name) as the version before hashes of UIDs named them."""
    names = {}
    for role in ("listenerset", "route", "networkpolicy"):
        name = fit(f"{xr_name}-tcp-{role}")
        names[f"tcp-{role}"] = (name, name)
    probe = fit(f"{names['tcp-listenerset'][0]}-probe-{BLOCKED_PORT}")
    names[f"tcp-probe-{BLOCKED_PORT}"] = (probe, probe)
    return names


def lease(xr: dict, port: int, blocked: str | None = None) -> dict:
    return build_claim(
        name=f"tcp-postgresql-{port}",
        namespace=NS,
        pool="postgresql",
        shard=1,
        port=port,
        gateway="postgresql-1",
        hostname="db1.example.ch",
        owner=xr["metadata"]["name"],
        holder=xr["metadata"]["uid"],
        blocked=blocked,
    )


def run(spec: TCPAccess, xr: dict, observed: dict) -> dict[str, dict]:
    result = run_tenant(spec, xr=xr, observed=observed, candidates=[gateway(1)])
    return {key: desired.resource for key, desired in result.resources.items()}


def names_of(obj: dict) -> tuple[str, str]:
    """(name, Object name) of a composed object; direct, both are its name."""
    if obj["kind"] == "Object":
        return obj["spec"]["forProvider"]["manifest"]["metadata"]["name"], obj["metadata"]["name"]
    return obj["metadata"]["name"], obj["metadata"]["name"]


@pytest.mark.parametrize(
    "xr_name",
    [OLD_NAME + "-and-more", "pg--abc12"],
    ids=["cut-by-the-old-scheme", "kept-by-the-old-scheme"],
)
@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "direct"])
def test_objects_composed_before_an_upgrade_keep_their_names(xr_name, wrapped):
    """Names a version before this one gave (a long name cut with a hash of the name alone, a
    double hyphen kept): the XR's objects keep them, and its route still names its listener
    set. A new name would be a delete and a create: the tenant would lose its listener."""
    xr = {"metadata": {"name": xr_name, "uid": UID}}
    backend = {"namespace": "tenants", "service": "postgresql-rw", "port": 5432}
    spec = TCPAccess.model_validate(
        tenant_input(wrap=wrapped, placement="Gateway", backend=backend)
    )
    fresh = run(spec, xr, {"tcp-claim-10003": lease(xr, PORT)})
    observed = {}
    for key, (name, object_name) in old_names(xr_name).items():
        obj = copy.deepcopy(fresh.get(key) or fresh["tcp-listenerset"])  # a probe is one too
        inner = obj["spec"]["forProvider"]["manifest"] if wrapped else obj
        inner["metadata"]["name"] = name
        obj["metadata"]["name"] = object_name
        observed[key] = obj
    observed["tcp-claim-10003"] = lease(xr, PORT)
    observed[f"tcp-claim-{BLOCKED_PORT}"] = lease(xr, BLOCKED_PORT, blocked="squatted")
    if wrapped:
        observed = {k: wrap(v, provider_config="p") if v["kind"] == "Lease" else v
                    for k, v in observed.items()}  # fmt: skip

    upgraded = run(spec, xr, observed)
    for key, names in old_names(xr_name).items():
        assert names_of(upgraded[key]) == names, key
    route = upgraded["tcp-route"]
    route = route["spec"]["forProvider"]["manifest"] if wrapped else route
    assert route["spec"]["parentRefs"][0]["name"] == old_names(xr_name)["tcp-listenerset"][0]
    # A new object of the same XR is named by the new scheme.
    assert names_of(fresh["tcp-listenerset"]) != old_names(xr_name)["tcp-listenerset"]


@pytest.mark.parametrize("junk", [5, None, "Not_A_Name", "a" * 300, ["x"]])
def test_an_observed_object_without_a_usable_name_is_named_by_the_rule(junk):
    """A name the API server would never return is no name to keep: the object gets the
    name the rule gives, and the step goes on."""
    xr = {"metadata": {"name": "pg-abc12", "uid": UID}}
    backend = {"namespace": "tenants", "service": "postgresql-rw", "port": 5432}
    spec = TCPAccess.model_validate(tenant_input(wrap=False, backend=backend))
    fresh = run(spec, xr, {"tcp-claim-10003": lease(xr, PORT)})
    listener_set = copy.deepcopy(fresh["tcp-listenerset"])
    listener_set["metadata"]["name"] = junk
    again = run(spec, xr, {"tcp-claim-10003": lease(xr, PORT), "tcp-listenerset": listener_set})
    assert again["tcp-listenerset"]["metadata"]["name"] == "pg-abc12-tcp-listenerset"
