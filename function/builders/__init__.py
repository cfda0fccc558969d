"""One builder per Kubernetes kind the tenant step returns. Plain dicts in, plain dicts out."""


def metadata(name: str, namespace: str | None, labels: dict, annotations: dict | None = None):
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta
