"""`tcp-access`: the operator's view of a pool in a live cluster (snapshot, report) and a
capacity planner that runs the function's own pool and allocation code (plan).

The pure parts (snapshot, report, plan) work on plain dicts; only `kube` talks to a cluster.
"""
