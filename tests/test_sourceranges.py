"""Allowlist entries as Envoy Gateway (Go's net.ParseCIDR) reads them: the tenant writes
them, so every hostile shape is refused, and what is accepted is emitted canonically."""

import pytest

from function import sourceranges
from function.sourceranges import InvalidSourceRange, parse, parse_entry


@pytest.mark.parametrize(
    ("entry", "canonical"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.7", "203.0.113.7/32"),  # a bare address is one host
        ("203.0.113.7/24", "203.0.113.0/24"),  # host bits cleared
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:DB8::1/64", "2001:db8::/64"),
        ("0:0:0:0:0:0:0:0/0", "::/0"),
        ("::1.2.3.4", "::102:304/128"),  # an IPv4-compatible (not mapped) IPv6 address
        ("198.51.100.0/024", "198.51.100.0/24"),  # Go's prefix parser reads leading zeros
    ],
)
def test_accepted_entries_are_emitted_canonically(entry, canonical):
    assert str(parse_entry(entry)) == canonical


@pytest.mark.parametrize(
    "entry",
    [
        "300.1.1.1/8",  # admitted by Envoy Gateway's unanchored CRD pattern
        "010.0.0.1/8",  # leading zeros in an octet: Go refuses (octal ambiguity)
        "1.2.3.04",
        "::1.02.3.4",
        "1.2.3.4/33",
        "2001:db8::/129",
        "1.2.3.4/255.255.255.0",  # a netmask: Python would read it, Go does not
        "1.2.3.4/0.0.0.255",  # a hostmask
        "fe80::1%eth0",  # zone ids
        "fe80::1%eth0/64",
        "1.2.3.4/",
        "/8",
        "1.2.3.4//8",
        "1.2.3.4/-1",
        "1.2.3.4/+8",
        " 1.2.3.4/8",
        "1.2.3.4/8 ",
        "1.2.3.4/8\n",
        "1.2.3",
        "0x7f.0.0.1",
        "\u0661.\u0662.\u0663.\u0664",  # non-ASCII digits
        "12345::",
        "1:2:3:4:5:6:7:8:9",
        "::ffff:203.0.113.7",  # IPv4-mapped: IPv4 clients never match it
        "",
        "a" * 10_000,
        "0.0.0.0/0, 10.0.0.0/8",  # one string with two entries
    ],
)
def test_hostile_entries_are_refused(entry):
    with pytest.raises(InvalidSourceRange):
        parse_entry(entry)


@pytest.mark.parametrize("entry", [None, 1, 1.5, True, ["10.0.0.0/8"], {"cidr": "10.0.0.0/8"}])
def test_entries_that_are_not_strings_are_refused(entry):
    with pytest.raises(InvalidSourceRange, match="not a string"):
        parse_entry(entry)


def test_a_list_names_its_first_bad_entry_and_never_echoes_much_of_it():
    with pytest.raises(InvalidSourceRange) as err:
        parse(["10.0.0.0/8", "300.1.1.1/8" + "9" * 500])
    assert str(err.value).startswith("entry 1: ")
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("value", ["10.0.0.0/8", None, {"a": 1}, 7])
def test_a_value_that_is_not_a_list_is_refused(value):
    with pytest.raises(InvalidSourceRange, match="not a list"):
        parse(value)


def test_at_most_256_entries():
    hosts = [f"10.0.{i // 256}.{i % 256}" for i in range(257)]
    assert len(parse(hosts[:256]).networks) == 256
    with pytest.raises(InvalidSourceRange, match="at most 256"):
        parse(hosts)


def test_duplicates_collapse_and_the_order_is_canonical():
    ranges = parse(["2001:db8::/32", "10.1.2.3/8", "10.0.0.0/8", "192.0.2.1"])
    assert ranges.cidrs == ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("entries", "everyone"),
    [
        (["0.0.0.0/0"], True),  # AppCat's default
        (["0.0.0.0/0", "::/0"], True),
        (["0.0.0.0/0", "10.0.0.0/8"], True),
        ([], True),  # like an empty loadBalancerSourceRanges
        (["0.0.0.0/0", "2001:db8::/32"], False),  # IPv6 is restricted
        (["::/0"], False),  # IPv4 is shut out
        (["0.0.0.0/1", "128.0.0.0/1"], False),  # covers IPv4, but not written as such
        (["203.0.113.0/24"], False),
    ],
)
def test_which_lists_admit_everyone(entries, everyone):
    assert parse(entries).admits_everyone is everyone


def test_admits_reads_the_client_address():
    ranges = parse(["203.0.113.0/24", "2001:db8::/32"])
    assert ranges.admits("203.0.113.7")
    assert not ranges.admits("198.51.100.7")
    assert ranges.admits("2001:db8::7")
    assert not ranges.admits("2001:db9::7")
    assert sourceranges.parse(["0.0.0.0/0"]).admits("198.51.100.7")
