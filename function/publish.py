"""What the tenant step tells others about an allocation: connection details and patches."""

from dataclasses import dataclass
from typing import Any

from function import fieldpath
from function.inputs import ConnectionDetailKeys, Patch


@dataclass(frozen=True)
class Endpoint:
    host: str | None
    port: int

    def value(self, kind: str) -> Any:
        if kind == "port":
            return self.port
        if kind == "host":
            return self.host
        return f"{self.host}:{self.port}" if self.host else None


def connection_details(
    keys: ConnectionDetailKeys, endpoint: Endpoint, earlier: dict[str, bytes]
) -> tuple[dict[str, bytes], list[str]]:
    """(details, warnings). A template naming a missing detail is left out: a broken URL is
    worse than none."""
    details: dict[str, bytes] = {}
    warnings: list[str] = []
    if keys.host and endpoint.host:
        details[keys.host] = endpoint.host.encode()
    if keys.port:
        details[keys.port] = str(endpoint.port).encode()
    values = {k: v.decode(errors="replace") for k, v in earlier.items()}
    values.update({"host": endpoint.host or "", "port": str(endpoint.port)})
    for key, template in keys.templates.items():
        try:
            details[key] = fieldpath.render(template, values).encode()
        except fieldpath.MissingField as err:
            warnings.append(
                f"connectionDetails.templates.{key}: no connection detail {err.path} from an "
                "earlier step; the key is left out"
            )
        except ValueError as err:
            warnings.append(f"connectionDetails.templates.{key}: {err}")
    return details, warnings


def kept_details(keys: ConnectionDetailKeys, observed: dict[str, bytes]) -> dict[str, bytes]:
    """Before an allocation is usable, publish what the XR already published."""
    return {k: observed[k] for k in _names(keys) if k in observed}


def withdrawn_details(keys: ConnectionDetailKeys, observed: dict[str, bytes]) -> dict[str, bytes]:
    """The details the XR published, emptied: for a port that turned out not to be the
    tenant's. Crossplane v1.x keeps a key a function stops returning, so each one is
    overwritten with an empty value instead (v2 XRs publish no details)."""
    return {k: b"" for k in _names(keys) if observed.get(k)}


def _names(keys: ConnectionDetailKeys) -> list[str]:
    return [k for k in (keys.host, keys.port, *keys.templates) if k]


def apply_patches(
    patches: list[Patch] | tuple[Patch, ...], endpoint: Endpoint, earlier: dict[str, dict]
) -> tuple[dict[str, dict], dict[str, Any], list[str]]:
    """(patched earlier resources by key, XR paths -> values, warnings). Nothing but the
    patched field changes in a resource."""
    resources: dict[str, dict] = {}
    composite: dict[str, Any] = {}
    warnings: list[str] = []
    for number, patch in enumerate(patches):
        value = patch.literal if patch.value is None else endpoint.value(patch.value)
        if value is None:
            warnings.append(f"patches.{number}: no host known yet for {patch.value}")
            continue
        if patch.resource is None:
            composite[patch.fieldPath] = value
            continue
        source = resources.get(patch.resource) or earlier.get(patch.resource)
        if source is None:
            warnings.append(
                f"patches.{number}.resource: no desired resource {patch.resource!r} from an "
                "earlier step; nothing patched"
            )
            continue
        patched = _copy(source)
        try:
            fieldpath.set_value(patched, patch.fieldPath, value)
        except (TypeError, ValueError) as err:
            warnings.append(f"patches.{number}.fieldPath: {err}")
            continue
        resources[patch.resource] = patched
    return resources, composite, warnings


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj
