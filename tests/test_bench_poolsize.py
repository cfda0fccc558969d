"""The pool-size benchmark runs end to end at tiny sizes and reports every column, so
its baseline figures can be reproduced after the pool step changes."""

from bench import poolsize


def test_poolsize_runs_both_modes_at_tiny_sizes():
    section = poolsize.run(quick=True, sizes=(50, 300))
    [(_, markdown)] = section.tables
    rows = [line for line in markdown.splitlines() if line.startswith("| v")]
    assert [row.split("|")[1].strip() for row in rows] == ["v2", "v1", "v2", "v1"]
    assert [row.split("|")[2].strip() for row in rows] == ["50", "50", "300", "300"]


def test_poolsize_measures_lookups_as_the_growth_over_the_first_request():
    small = poolsize.measure("v2", 50, rounds=1)
    larger = poolsize.measure("v2", 300, rounds=1)
    assert small["lookups"] == small["largest"] - small["first"] > 0
    assert larger["lookups"] > small["lookups"]  # today every claim is read each reconcile
    assert larger["shards"] == 4 and small["shards"] == 1
    assert larger["reconcile_cpu"] >= larger["first_cpu"] > 0
