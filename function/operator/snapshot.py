"""A pool's shard Gateways and claims as a YAML stream for `crossplane render`.

The objects are what the function's lookups would return, minus what only the server
keeps (managedFields, resourceVersion, uid...): a render input a person can read and diff.
"""

import copy

import yaml

from function import fieldpath, labels
from function.claims import parse
from function.observed import SERVER_FIELDS

KEPT_METADATA = ("name", "namespace", "labels", "annotations")


def clean(obj: dict) -> dict:
    """apiVersion, kind, metadata name/namespace/labels/annotations, spec and status."""
    metadata = fieldpath.mapping(obj, "metadata")
    out: dict = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: copy.deepcopy(metadata[k]) for k in KEPT_METADATA if metadata.get(k)},
    }
    for part in ("spec", "status"):
        if part in obj:
            out[part] = copy.deepcopy(obj[part])
    # A provider-kubernetes Object reports the live inner object, server metadata and all.
    inner = fieldpath.get(out, "status.atProvider.manifest", None)
    if isinstance(inner, dict) and isinstance(inner.get("metadata"), dict):
        inner["metadata"] = {k: v for k, v in inner["metadata"].items() if k not in SERVER_FIELDS}
    return out


def _gateway_order(gateway: dict) -> tuple:
    shard = fieldpath.mapping(gateway, "metadata.labels").get(labels.SHARD, "")
    number = int(shard) if isinstance(shard, str) and shard.isdigit() else 1 << 30
    return (number, fieldpath.text(gateway, "metadata.name") or "")


def _claim_order(obj: dict) -> tuple:
    claim = parse(obj)
    return (claim.port if claim else 1 << 30, fieldpath.text(obj, "metadata.name") or "")


def objects(gateways: list[dict], claims: list[dict]) -> list[dict]:
    """Gateways by shard index, then claims by port: a stable order that diffs well."""
    ordered = sorted(gateways, key=_gateway_order) + sorted(claims, key=_claim_order)
    return [clean(obj) for obj in ordered]


def render(gateways: list[dict], claims: list[dict]) -> str:
    return yaml.safe_dump_all(
        objects(gateways, claims), sort_keys=False, explicit_start=True, default_flow_style=False
    )
