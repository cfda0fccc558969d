"""An in-memory Kubernetes API server for the pipeline simulator.

What it reproduces, and how it simplifies:

* Objects are plain dicts keyed by ``(group, kind, namespace or "", name)``. The version
  in ``apiVersion`` is not part of the key: one storage per group/kind, and a read through
  any version returns the object with the requested ``apiVersion`` (the API server
  converts; here conversion is the identity).
* The server owns ``metadata.uid`` (deterministic from the seed), ``creationTimestamp``
  (a logical clock, one tick per create, so creation order is total and "oldest" is
  well-defined), ``resourceVersion`` (one global counter, bumped only by real changes)
  and ``generation`` (bumped when anything outside ``metadata``/``status`` changes).
* Server-side apply (``apply``/``apply_status``) tracks field ownership per manager at
  leaf granularity. Lists are atomic, except ``metadata.ownerReferences``, which merges
  by ``uid`` like the real ``+listType=map`` list. Re-applying replaces exactly the
  fields this manager set last time: fields it no longer sets disappear unless another
  manager also owns them. Force ownership is always on (as Crossplane uses it).
* The ``status`` subresource is separate: ``apply`` ignores ``status`` in the intent,
  ``apply_status``/``update_status`` only touch ``status``.
* A second ``controller: true`` owner reference is rejected with a 422, the message
  Kubernetes' ``ValidateOwnerReferences`` produces.
* Garbage collection is synchronous: deleting an object immediately deletes every object
  whose owner references now all point at missing owners, and strips dangling
  references from objects that still have a live owner (what the Kubernetes garbage
  collector does with background propagation, minus the delay). Objects with finalizers
  get ``deletionTimestamp`` and stay until the finalizers are removed.
* ``snapshot()`` is O(number of kinds): storage buckets are shared copy-on-write with the
  snapshot, which then serves stale reads the way a lagging informer cache does.
* No admission, validation (beyond the owner-reference rule and namespace scoping),
  optimistic concurrency or watches.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .objects import (
    LABEL_NAMESPACE_NAME,
    Obj,
    Path,
    delete_path,
    fast_copy,
    get_path,
    group_of,
    leaf_paths,
    set_path,
)

GroupKind = tuple[str, str]
Key = tuple[str, str, str, str]  # (group, kind, namespace or "", name)

# Kinds that are cluster-scoped out of the box; XR kinds are registered by create_xr.
DEFAULT_CLUSTER_SCOPED: frozenset[GroupKind] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("gateway.networking.k8s.io", "GatewayClass"),
        ("kubernetes.crossplane.io", "Object"),
        ("kubernetes.crossplane.io", "ProviderConfig"),
        ("kubernetes.crossplane.io", "ClusterProviderConfig"),
        ("kubernetes.m.crossplane.io", "ClusterProviderConfig"),
    }
)

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
_OWNER_REFS: Path = ("metadata", "ownerReferences")


class ApiError(Exception):
    """An error the API server returns. ``status`` is the HTTP code (404, 409, 422, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def key_of(obj: Mapping[str, Any]) -> Key:
    m = obj.get("metadata") or {}
    return (group_of(obj["apiVersion"]), obj["kind"], m.get("namespace") or "", m["name"])


class _Bucket:
    """All objects of one group/kind plus a label index. Shared copy-on-write with snapshots."""

    __slots__ = ("by_label", "objects", "shared")

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.by_label: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self.shared = False

    def clone(self) -> _Bucket:
        b = _Bucket()
        b.objects = dict(self.objects)
        b.by_label = {k: set(v) for k, v in self.by_label.items()}
        return b


class Reader:
    """Read API shared by the live :class:`Cluster` and its frozen :class:`ClusterView`."""

    _buckets: dict[GroupKind, _Bucket]
    _cluster_scoped: set[GroupKind]

    def is_namespaced(self, api_version: str, kind: str) -> bool:
        return (group_of(api_version), kind) not in self._cluster_scoped

    def get_raw(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        """The stored dict itself (do not mutate), or None. Namespace is ignored for
        cluster-scoped kinds, as controller-runtime's cache reader does."""
        group = group_of(api_version)
        bucket = self._buckets.get((group, kind))
        if bucket is None:
            return None
        ns = (namespace or "") if (group, kind) not in self._cluster_scoped else ""
        return bucket.objects.get((ns, name))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None):
        """A private copy of the object as seen through ``api_version``, or None."""
        obj = self.get_raw(api_version, kind, name, namespace)
        if obj is None:
            return None
        out = fast_copy(obj)
        out["apiVersion"] = api_version
        return out

    def list_raw(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        """Stored dicts (do not mutate), sorted by namespace/name.

        ``namespace=None`` (or ``""``) lists across all namespaces; ``labels`` is an
        equality selector (all pairs must match; ``{}`` matches everything).
        """
        group = group_of(api_version)
        bucket = self._buckets.get((group, kind))
        if bucket is None:
            return []
        if labels:
            sets = []
            for pair in labels.items():
                hit = bucket.by_label.get(pair)
                if not hit:
                    return []
                sets.append(hit)
            sets.sort(key=len)
            keys = set(sets[0]).intersection(*sets[1:]) if len(sets) > 1 else sets[0]
        else:
            keys = bucket.objects.keys()
        if namespace and (group, kind) not in self._cluster_scoped:
            keys = [k for k in keys if k[0] == namespace]
        return [bucket.objects[k] for k in sorted(keys)]

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        """Private copies, sorted by namespace/name (see :meth:`list_raw`)."""
        out = []
        for obj in self.list_raw(api_version, kind, namespace, labels):
            c = fast_copy(obj)
            c["apiVersion"] = api_version
            out.append(c)
        return out

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels, including the implied ``kubernetes.io/metadata.name``.

        Namespace objects are optional: a namespace nobody created still has the
        implied label, so selectors on it work without setup.
        """
        ns = self.get_raw("v1", "Namespace", namespace)
        labels = dict((ns or {}).get("metadata", {}).get("labels") or {})
        labels[LABEL_NAMESPACE_NAME] = namespace
        return labels

    def count(self, api_version: str, kind: str) -> int:
        bucket = self._buckets.get((group_of(api_version), kind))
        return len(bucket.objects) if bucket else 0


class ClusterView(Reader):
    """A frozen, read-only copy of the cluster at one moment: a lagging informer cache."""

    def __init__(
        self,
        buckets: dict[GroupKind, _Bucket],
        cluster_scoped: set[GroupKind],
        resource_version: int,
    ) -> None:
        self._buckets = buckets
        self._cluster_scoped = cluster_scoped
        self.resource_version = resource_version


class Cluster(Reader):
    """The live in-memory API server. Deterministic for a given ``seed``."""

    def __init__(self, *, seed: int = 0, cluster_scoped: Iterable[GroupKind] = ()) -> None:
        self._buckets = {}
        self._cluster_scoped = set(DEFAULT_CLUSTER_SCOPED) | set(cluster_scoped)
        self._rng = random.Random(seed)
        self._clock = 0
        self._rv = 0
        # Field ownership per object key: manager -> leaf paths it owns.
        self._managed: dict[Key, dict[str, frozenset[Path]]] = {}
        self._by_uid: dict[str, Key] = {}
        self._dependents: dict[str, set[Key]] = {}  # owner uid -> keys referencing it

    # -- scope and clock --------------------------------------------------------------

    def register_kind(self, group: str, kind: str, *, namespaced: bool) -> None:
        if namespaced:
            self._cluster_scoped.discard((group, kind))
        else:
            self._cluster_scoped.add((group, kind))

    @property
    def resource_version(self) -> int:
        """Global write counter: unchanged means nothing in the cluster changed."""
        return self._rv

    def time(self) -> datetime.datetime:
        """The logical clock as an instant: what the function's clock reads in a simulation."""
        return _EPOCH + datetime.timedelta(seconds=self._clock)

    def now(self) -> str:
        """The logical clock as an RFC 3339 timestamp (sortable as a string)."""
        return self.time().strftime("%Y-%m-%dT%H:%M:%SZ")

    def tick(self, seconds: int = 1) -> str:
        self._clock += seconds
        return self.now()

    def snapshot(self) -> ClusterView:
        for b in self._buckets.values():
            b.shared = True
        return ClusterView(dict(self._buckets), set(self._cluster_scoped), self._rv)

    # -- writes -----------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any], *, manager: str = "sim") -> Obj:
        key = self._checked_key(obj)
        if self._stored(key) is not None:
            raise ApiError(409, "AlreadyExists", f"{key[1]} {key[3]!r} already exists")
        new = fast_copy(dict(obj))
        new.setdefault("metadata", {})
        self._check_owner_refs(new, key)
        paths = frozenset(p for p in leaf_paths(new) if p[:2] != _OWNER_REFS)
        self._managed[key] = {manager: paths}
        return self._out(self._store(key, new, None), obj["apiVersion"])

    def apply(self, obj: Mapping[str, Any], *, manager: str) -> Obj:
        """Server-side apply with ForceOwnership of everything but ``status``."""
        key = self._checked_key(obj)
        intent = {k: v for k, v in obj.items() if k != "status"}
        return self._out(self._ssa(key, intent, manager, status=False), obj["apiVersion"])

    def apply_status(self, obj: Mapping[str, Any], *, manager: str) -> Obj:
        """Server-side apply to the status subresource (only ``status`` is used)."""
        key = self._checked_key(obj)
        if self._stored(key) is None:
            raise ApiError(404, "NotFound", f"{key[1]} {key[3]!r} not found")
        intent = {"status": obj.get("status") or {}}
        return self._out(self._ssa(key, intent, manager, status=True), obj["apiVersion"])

    def update(self, obj: Mapping[str, Any]) -> Obj:
        """Replace everything but server metadata and ``status`` (a PUT)."""
        key = self._checked_key(obj)
        old = self._stored(key)
        if old is None:
            raise ApiError(404, "NotFound", f"{key[1]} {key[3]!r} not found")
        new = fast_copy({k: v for k, v in obj.items() if k != "status"})
        new.setdefault("metadata", {})
        for f in (*_SERVER_METADATA, "deletionTimestamp"):
            if f in old["metadata"]:
                new["metadata"][f] = old["metadata"][f]
            else:
                new["metadata"].pop(f, None)
        if "status" in old:
            new["status"] = old["status"]
        self._check_owner_refs(new, key)
        return self._out(self._store(key, new, old), obj["apiVersion"])

    def update_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        status: Mapping[str, Any],
    ) -> Obj:
        """Replace ``status`` wholesale (a controller's PUT to the status subresource)."""
        key = self._key(api_version, kind, name, namespace)
        old = self._stored(key)
        if old is None:
            raise ApiError(404, "NotFound", f"{kind} {name!r} not found")
        new = dict(old)  # shallow: only the status subtree is replaced
        new["metadata"] = dict(old["metadata"])
        new["status"] = fast_copy(dict(status))
        return self._out(self._store(key, new, old), api_version)

    def set_finalizers(
        self, api_version: str, kind: str, name: str, namespace: str | None, finalizers: list[str]
    ) -> None:
        """Set ``metadata.finalizers``; removing the last one of a deleted object deletes it."""
        key = self._key(api_version, kind, name, namespace)
        old = self._stored(key)
        if old is None:
            return
        new = dict(old)
        new["metadata"] = dict(old["metadata"])
        if finalizers:
            new["metadata"]["finalizers"] = list(finalizers)
        else:
            new["metadata"].pop("finalizers", None)
        if not finalizers and old["metadata"].get("deletionTimestamp"):
            self._remove(key)
            return
        self._store(key, new, old)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation). Returns False if the object did not exist."""
        key = self._key(api_version, kind, name, namespace)
        return self._delete_key(key)

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Obj:
        """Create or label a Namespace object (optional: selectors work without one)."""
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            obj["metadata"]["labels"] = dict(labels)
        return self.apply(obj, manager="sim")

    # -- internals --------------------------------------------------------------------

    def _key(self, api_version: str, kind: str, name: str, namespace: str | None) -> Key:
        group = group_of(api_version)
        ns = (namespace or "") if (group, kind) not in self._cluster_scoped else ""
        return (group, kind, ns, name)

    def _checked_key(self, obj: Mapping[str, Any]) -> Key:
        group, kind, ns, name = key_of(obj)
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        namespaced = (group, kind) not in self._cluster_scoped
        if namespaced and not ns:
            raise ApiError(400, "BadRequest", "an empty namespace may not be set during creation")
        if not namespaced and ns:
            # The client would build a namespaced URL for a cluster-scoped resource.
            raise ApiError(404, "NotFound", f"{kind} is cluster-scoped, got namespace {ns!r}")
        return (group, kind, ns, name)

    def _stored(self, key: Key) -> Obj | None:
        bucket = self._buckets.get(key[:2])
        return bucket.objects.get(key[2:]) if bucket else None

    def _out(self, obj: Obj | None, api_version: str) -> Obj:
        out = fast_copy(obj) if obj is not None else {}
        if out:
            out["apiVersion"] = api_version
        return out

    def _writable(self, gk: GroupKind) -> _Bucket:
        b = self._buckets.get(gk)
        if b is None:
            b = self._buckets[gk] = _Bucket()
        elif b.shared:
            b = self._buckets[gk] = b.clone()
        return b

    def _ssa(self, key: Key, intent: Obj, manager: str, *, status: bool) -> Obj:
        old = self._stored(key)
        intent = dict(intent)
        md = dict(intent.get("metadata") or {})
        owner_refs = md.pop("ownerReferences", None)
        for f in _SERVER_METADATA:
            md.pop(f, None)
        if not status:
            intent["metadata"] = md
        new_paths = frozenset(leaf_paths(intent))
        managers = dict(self._managed.get(key, {})) if old is not None else {}
        mine_before = managers.get(manager, frozenset())
        in_scope = (lambda p: p[0] == "status") if status else (lambda p: p[0] != "status")
        others: set[Path] = set()
        for m, paths in managers.items():
            if m != manager:
                others.update(paths)

        new = fast_copy(old) if old is not None else {"metadata": {}}
        for p in mine_before:
            if in_scope(p) and p not in new_paths and p not in others:
                delete_path(new, p)
        for p in new_paths:
            set_path(new, p, fast_copy(get_path(intent, p)))
        new.setdefault("metadata", {})
        if owner_refs is not None:
            new["metadata"]["ownerReferences"] = _merge_owner_refs(
                new["metadata"].get("ownerReferences") or [], owner_refs
            )
        self._check_owner_refs(new, key)

        # Force ownership: the applied fields move to this manager.
        for m in list(managers):
            if m != manager:
                managers[m] = managers[m] - new_paths
                if not managers[m]:
                    del managers[m]
        managers[manager] = frozenset(p for p in mine_before if not in_scope(p)) | new_paths
        stored = self._store(key, new, old)
        self._managed[key] = managers
        return stored

    def _check_owner_refs(self, obj: Obj, key: Key) -> None:
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        controllers = [r for r in refs if r.get("controller")]
        if len(controllers) > 1:
            listed = ", ".join(
                f"{{APIVersion:{r.get('apiVersion')} Kind:{r.get('kind')} "
                f"Name:{r.get('name')} UID:{r.get('uid')} Controller:true}}"
                for r in controllers
            )
            raise ApiError(
                422,
                "Invalid",
                f'{key[1]} "{key[3]}" is invalid: metadata.ownerReferences: Invalid value: '
                f"[]v1.OwnerReference{{{listed}}}: Only one reference can have Controller "
                'set to true. Found "true" in references for '
                + " and ".join(f"{r.get('kind')}/{r.get('name')}" for r in controllers),
            )

    def _store(self, key: Key, new: Obj, old: Obj | None) -> Obj:
        """Persist ``new`` (a private dict) if it differs from ``old``; maintain indexes."""
        if old is not None and new == old:
            return old
        self._rv += 1
        md = new["metadata"]
        md["name"] = key[3]
        if key[2]:
            md["namespace"] = key[2]
        else:
            md.pop("namespace", None)
        if old is None:
            self._clock += 1
            md["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            md["creationTimestamp"] = self.now()
            md["generation"] = 1
        else:
            om = old["metadata"]
            md["uid"] = om["uid"]
            md["creationTimestamp"] = om["creationTimestamp"]
            changed = _spec_part(new) != _spec_part(old)
            md["generation"] = om.get("generation", 1) + (1 if changed else 0)
        md["resourceVersion"] = str(self._rv)

        bucket = self._writable(key[:2])
        nk = key[2:]
        if old is not None:
            for pair in (old["metadata"].get("labels") or {}).items():
                s = bucket.by_label.get(pair)
                if s is not None:
                    s.discard(nk)
        for pair in (md.get("labels") or {}).items():
            bucket.by_label.setdefault(pair, set()).add(nk)
        bucket.objects[nk] = new
        self._by_uid[md["uid"]] = key
        old_owners = {
            r["uid"] for r in (old or {}).get("metadata", {}).get("ownerReferences") or ()
        }
        new_owners = {r["uid"] for r in md.get("ownerReferences") or ()}
        for uid in old_owners - new_owners:
            self._dependents.get(uid, set()).discard(key)
        for uid in new_owners - old_owners:
            self._dependents.setdefault(uid, set()).add(key)
        return new

    def _delete_key(self, key: Key) -> bool:
        obj = self._stored(key)
        if obj is None:
            return False
        md = obj["metadata"]
        if md.get("finalizers"):
            if not md.get("deletionTimestamp"):
                new = dict(obj)
                new["metadata"] = dict(md)
                new["metadata"]["deletionTimestamp"] = self.now()
                self._store(key, new, obj)
            return True
        self._remove(key)
        return True

    def _remove(self, key: Key) -> None:
        obj = self._stored(key)
        if obj is None:
            return
        self._rv += 1
        bucket = self._writable(key[:2])
        nk = key[2:]
        del bucket.objects[nk]
        for pair in (obj["metadata"].get("labels") or {}).items():
            s = bucket.by_label.get(pair)
            if s is not None:
                s.discard(nk)
        self._managed.pop(key, None)
        uid = obj["metadata"]["uid"]
        self._by_uid.pop(uid, None)
        for r in obj["metadata"].get("ownerReferences") or ():
            self._dependents.get(r["uid"], set()).discard(key)
        for dep in sorted(self._dependents.pop(uid, set())):
            self._collect(dep)

    def _collect(self, key: Key) -> None:
        """Kubernetes GC: delete a dependent whose owners are all gone, else drop dangling refs."""
        obj = self._stored(key)
        if obj is None:
            return
        refs = obj["metadata"].get("ownerReferences") or []
        live = [r for r in refs if r["uid"] in self._by_uid]
        if not live:
            self._delete_key(key)
            return
        if len(live) != len(refs):
            new = dict(obj)
            new["metadata"] = dict(obj["metadata"])
            new["metadata"]["ownerReferences"] = live
            self._store(key, new, obj)


def _merge_owner_refs(current: list[Obj], applied: list[Obj]) -> list[Obj]:
    """``ownerReferences`` is a map-list keyed by uid: applied entries replace same-uid ones."""
    by_uid = {r.get("uid"): r for r in current}
    for r in applied:
        by_uid[r.get("uid")] = fast_copy(r)
    return list(by_uid.values())


def _spec_part(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion")}
