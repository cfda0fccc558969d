"""The pool-size benchmark runs end to end at tiny sizes and reports what issue 17 asks: both
flavours, the steady-state request sizes and what the lookups add, the recount cycle, the
verdicts; and at a pool larger than its read budget, what the lookups add does not grow with
the pool."""

from bench import poolsize

BUDGET_KIB = 300  # 300 claims (4 shards) do not fit: the pool is recounted in windows


def test_poolsize_reports_both_modes_the_recount_cycle_and_the_verdicts():
    section = poolsize.run(
        quick=True,
        sizes=(300, 3000),
        budget_kib=BUDGET_KIB,
        convergence=(),
        bursts=(),
        with_rss=False,
        replay_above=1000,
    )
    _, markdown = section.tables[0]
    header, _, *rows = markdown.splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    for column in ("largest", "< 4 MiB", "lookups", "< 1 MiB", "ratio", "recount cycle"):
        assert column in columns
    assert "<= 1.3x ratio at 300" in columns
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[1]) for c in cells] == [
        ("v2", "300"),
        ("v1", "300"),
        ("v2", "3,000"),
        ("v1", "3,000"),
    ]
    for c in cells:
        assert c[columns.index("view")] == "Window"
        assert c[columns.index("< 1 MiB")] in ("met", "**MISSED**")
        assert c[columns.index("recount cycle")].split()[0].isdigit()
    assert cells[2][columns.index("recount cycle")].endswith("(replayed)")


def test_lookups_do_not_grow_with_the_pool_beyond_its_budget():
    small = poolsize.measure("v2", 300, rounds=1, budget_kib=BUDGET_KIB)
    large = poolsize.measure("v2", 3000, rounds=1, budget_kib=BUDGET_KIB, replay_above=1000)
    assert small["view"]["mode"] == large["view"]["mode"] == "Window"
    assert small["lookups"] == small["largest"] - small["first"] > 0
    # Ten times the claims, a window of the same budget: a few shards' claims and one
    # shard's listener sets, never the pool's.
    budget = BUDGET_KIB * 1024
    assert small["lookups"] <= 1.1 * budget and large["lookups"] <= 1.1 * budget
    assert large["lookups"] <= 1.3 * small["lookups"]
    assert large["first"] > 5 * small["first"]  # the observed Gateways do grow
    assert small["recount"] == small["replay"] >= 2  # reconciled, and replayed alike
    assert large["recount"] == large["replay"] >= 10
    assert large["reconcile_cpu"] >= large["first_cpu"] > 0


def test_a_burst_of_waiting_tenants_grows_the_pool():
    found = poolsize.after_burst(poolsize.steady("v2", 300), 120)
    before, after = (int(n) for n in found["shards"].split(" -> "))
    assert after > before
    assert found["tickets"] > 0
