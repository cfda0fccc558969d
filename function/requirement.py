"""A Crossplane required-resources selector, as plain data."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    """Select objects by apiVersion, kind and labels (and namespace, on Crossplane v2)."""

    name: str
    api_version: str
    kind: str
    match_labels: dict[str, str]
    namespace: str | None = None

    def matches(self, obj: dict) -> bool:
        """Whether Crossplane would return `obj` for this selector (v2 semantics)."""
        if obj.get("apiVersion") != self.api_version or obj.get("kind") != self.kind:
            return False
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        found = metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {}
        return all(found.get(k) == v for k, v in self.match_labels.items())
