"""kube-state-metrics' custom resource state metrics, as it reads an object: the part of
its rules (pkg/customresourcestate/registry_factory.go) the monitoring example uses, so a
test can apply the example's config to the statuses the steps produce.

Covered: paths of keys, list indices and `[key=value]` lookups; Gauge (`valueFrom`, over
a list, a map or a value), Info and StateSet; `labelsFromPath` of the resource and of
each metric; `metricNamePrefix`; value conversion (numbers, booleans, "true"/"false"/
"yes"/"no"/"unknown", numeric strings). Not covered: `*` label copies, `labelFromKey`,
`nilIsZero`, quantities, percentages. RFC 3339 timestamps become Unix seconds, as Go's
`time.Parse(time.RFC3339, ...)` reads them.
"""

import datetime
from dataclasses import dataclass, field


class KsmError(ValueError):
    """What kube-state-metrics would log for a metric it cannot produce."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    name: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def get(obj: object, path: list) -> object:
    """A path's value, or None where any part of it is missing."""
    for part in path:
        if obj is None:
            return None
        part = str(part)
        if part.startswith("[") and part.endswith("]"):
            key, _, wanted = part[1:-1].partition("=")
            obj = _lookup(obj, key, wanted)
        elif isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit():
            obj = obj[int(part)] if int(part) < len(obj) else None
        else:
            return None
    return obj


def _lookup(items: object, key: str, wanted: str) -> object:
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and key in item and _label(item[key]) == wanted:
            return item
    return None


def to_float(value: object) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "yes"):
            return 1.0
        if lowered in ("false", "no", "unknown"):
            return 0.0
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:  # RFC 3339 requires an offset
                return moment.timestamp()
    raise KsmError(f"{value!r} is not a number")


def _label(value: object) -> str:
    # Go's %v: whole numbers without a fraction, booleans in lower case.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def _labels(obj: object, paths: dict) -> dict[str, str]:
    found = {}
    for name, path in (paths or {}).items():
        value = get(obj, path)
        if value is not None:
            found[name] = _label(value)
    return found


def families(resource: dict, obj: dict) -> list[Family]:
    """Every metric family the config's `resource` entry makes of `obj`."""
    gvk = resource["groupVersionKind"]
    common = {
        "customresource_group": gvk["group"],
        "customresource_version": gvk["version"],
        "customresource_kind": gvk["kind"],
        **_labels(obj, resource.get("labelsFromPath")),
    }
    prefix = resource.get("metricNamePrefix", "kube_customresource")
    out = []
    for metric in resource["metrics"]:
        name = f"{prefix}_{metric['name']}" if prefix else metric["name"]
        family = Family(name)
        each = metric["each"]
        kind = each["type"]
        meta = each[{"Gauge": "gauge", "Info": "info", "StateSet": "stateSet"}[kind]]
        base = {**common, **_labels(obj, metric.get("labelsFromPath"))}
        target = get(obj, meta.get("path", []))
        try:
            values = {"Gauge": _gauge, "Info": _info, "StateSet": _stateset}[kind](meta, target)
        except KsmError as err:
            family.errors.append(str(err))
            values = []
        family.samples = [Sample(name, {**base, **labels}, value) for labels, value in values]
        out.append(family)
    return out


def _gauge(meta: dict, target: object) -> list[tuple[dict, float]]:
    value_from = meta.get("valueFrom", [])
    label_paths = meta.get("labelsFromPath")
    out = []
    if isinstance(target, dict):
        for key, item in target.items():
            # The entry named by a one-part valueFrom is the value itself.
            direct = len(value_from) == 1 and key == value_from[0]
            got = item if direct else get(item, value_from)
            if got is not None:
                labels = {**_labels(item, label_paths), **_labels(target, label_paths)}
                out.append((labels, to_float(got)))
    elif isinstance(target, list):
        for item in target:
            got = get(item, value_from)
            if got is not None:
                out.append((_labels(item, label_paths), to_float(got)))
    elif target is not None:
        got = get(target, value_from)
        if got is not None:
            out.append((_labels(target, label_paths), to_float(got)))
    return out


def _info(meta: dict, target: object) -> list[tuple[dict, float]]:
    items = target if isinstance(target, list) else [target]
    out = []
    for item in items:
        labels = _labels(item, meta.get("labelsFromPath"))
        if item is not None and labels:
            out.append((labels, 1.0))
    return out


def _stateset(meta: dict, target: object) -> list[tuple[dict, float]]:
    value = get(target, meta.get("valueFrom", []))
    if not isinstance(value, str):
        return []  # kube-state-metrics skips a status it cannot read yet
    return [({meta["labelName"]: entry}, 1.0 if value == entry else 0.0) for entry in meta["list"]]
