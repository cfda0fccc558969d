"""Generate the input CRDs in package/input/ from the pydantic models.

python -m function.crd            # write package/input/*.yaml
python -m function.crd --check    # exit 1 if a committed file differs
"""

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel

from function.inputs import API_VERSION, GatewayPool, TCPAccess

GROUP, VERSION = API_VERSION.split("/")
INPUTS: list[tuple[type[BaseModel], str]] = [
    (TCPAccess, "tcpaccesses"),
    (GatewayPool, "gatewaypools"),
]
OUT = Path(__file__).resolve().parent.parent / "package" / "input"


SCALARS = ("boolean", "integer", "number", "string")


def openapi(schema: dict, defs: dict) -> dict:
    """Turn pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema."""
    if "$ref" in schema:
        resolved = openapi(defs[schema["$ref"].split("/")[-1]], defs)
        extra = {k: v for k, v in schema.items() if k in ("description", "default")}
        return {**resolved, **openapi_keys(extra)}
    branches = schema.get("anyOf")
    if branches:
        # Optional[X] is anyOf [X, null]: the field is optional, its schema is X's.
        kept = [b for b in branches if b.get("type") != "null"]
        if len(kept) > 1 and all(b.get("type") in SCALARS for b in kept):
            # Any one scalar (a literal value): a structural schema says so only this way.
            any_value = {k: v for k, v in schema.items() if k != "anyOf"}
            return {**openapi_keys(any_value), "x-kubernetes-preserve-unknown-fields": True}
        if len(kept) != 1:
            raise ValueError(f"cannot express {schema} structurally")
        merged = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**openapi(kept[0], defs), **openapi_keys(merged)}
    out = openapi_keys(schema)
    if "const" in schema:
        out = {"type": "string", "enum": [schema["const"]], **out}
    if "enum" in schema:
        out.setdefault("type", "string")
    if schema.get("type") == "object" or "properties" in schema:
        out["type"] = "object"
        if "properties" in schema:
            out["properties"] = {k: openapi(v, defs) for k, v in schema["properties"].items()}
        if isinstance(schema.get("additionalProperties"), dict):
            out["additionalProperties"] = openapi(schema["additionalProperties"], defs)
        if schema.get("required"):
            out["required"] = list(schema["required"])
    if schema.get("type") == "array":
        out["items"] = openapi(schema["items"], defs)
    return out


_KEPT = (
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)


def openapi_keys(schema: dict) -> dict:
    out = {k: schema[k] for k in _KEPT if k in schema}
    if out.get("default") is None:
        out.pop("default", None)
    return out


def crd(model: type[BaseModel], plural: str) -> dict:
    schema = model.model_json_schema(by_alias=True)
    body = openapi(schema, schema.get("$defs", {}))
    body["properties"]["metadata"] = {"type": "object"}
    body["description"] = (model.__doc__ or "").strip()
    kind = model.model_fields["kind"].default
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {"name": VERSION, "served": True, "storage": True,
                 "schema": {"openAPIV3Schema": body}}
            ],
        },
    }  # fmt: skip


def render(model: type[BaseModel], plural: str) -> str:
    header = "# Generated from function/inputs.py by `python -m function.crd`. Do not edit.\n"
    return header + yaml.safe_dump(crd(model, plural), sort_keys=False, width=100)


def path_for(plural: str) -> Path:
    return OUT / f"{GROUP}_{plural}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for model, plural in INPUTS:
        path, text = path_for(plural), render(model, plural)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date, run `python -m function.crd`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
