"""The step's input, as composition authors write it in a Composition pipeline.

The CRDs in package/input/ are generated from these models (`python -m function.crd`).
"""

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from function import fieldpath
from function.names import is_dns_label, is_dns_subdomain

API_VERSION = "tcp.fn.servala.io/v1alpha1"

Port = Annotated[int, Field(ge=1, le=65535)]
PORT_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse `start-end` (inclusive); raise ValueError naming what is wrong."""
    match = PORT_RANGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a port range 'start-end'")
    start, end = int(match.group(1)), int(match.group(2))
    if not 1 <= start <= end <= 65535:
        raise ValueError(f"{text!r} must satisfy 1 <= start <= end <= 65535")
    return start, end


class _Model(BaseModel):
    # Unknown fields are typos: reject them so the author learns at once.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _dns_label(value: str, what: str) -> str:
    if not is_dns_label(value):
        raise ValueError(f"{what} {value!r} must be a DNS-1123 label (a-z, 0-9, '-', <= 63)")
    return value


def _status_path(value: str) -> str:
    parts = fieldpath.split(value)
    if parts[0] != "status" or len(parts) < 2:
        raise ValueError(f"{value!r} must be a path below status, e.g. status.tcpAccess")
    return value


class Backend(_Model):
    """The tenant's Service that the route sends traffic to."""

    namespace: str = Field(
        description="Namespace of the Service: a literal, or a template with {field.path} "
        "placeholders over the observed XR, e.g. vshn-postgresql-{metadata.name}."
    )
    service: str = Field(description="Name of the Service in that namespace (templates allowed).")
    port: Port = Field(description="Service port the route targets.")
    podSelector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of the backend pods, for the NetworkPolicy (empty: all pods).",
    )
    podPort: Port | None = Field(
        default=None,
        description="Pod port the NetworkPolicy opens (default: the Service port).",
    )

    @field_validator("namespace", "service")
    @classmethod
    def _name_or_template(cls, value: str, info) -> str:
        # A template is checked once rendered for the XR.
        if not fieldpath.placeholders(value):
            _dns_label(value, info.field_name)
        return value


class StaticGateway(_Model):
    """A shard given in the input instead of looked up (AppCat's static gateway list)."""

    name: str = Field(description="Gateway name in gatewayNamespace.")
    hostname: str | None = Field(default=None, description="DNS name tenants connect to.")
    ports: str = Field(description="Port range of this shard, 'start-end' inclusive.")
    capacity: int = Field(ge=2, description="Listeners this Gateway may carry, including its own.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_dns_subdomain(value):
            raise ValueError(f"name {value!r} must be a DNS-1123 subdomain")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_port_range(value)
        return value

    @property
    def port_range(self) -> tuple[int, int]:
        return parse_port_range(self.ports)


def _secret_key(value: str) -> str:
    if not SECRET_KEY.match(value):
        raise ValueError(f"{value!r} is not a valid Secret key ([-._a-zA-Z0-9]+)")
    return value


class ConnectionDetailKeys(_Model):
    """Connection detail keys to publish; an omitted key is not published."""

    host: str | None = Field(default=None, description="Key for the shard hostname.")
    port: str | None = Field(default=None, description="Key for the external port.")
    templates: dict[str, str] = Field(
        default_factory=dict,
        description="More keys, each a template over {host}, {port} and the connection "
        "details earlier steps put on the desired XR, e.g. "
        "postgresql://{POSTGRESQL_USER}:{POSTGRESQL_PASSWORD}@{host}:{port}/{POSTGRESQL_DB}. "
        "A template naming a missing detail is left out, with a Warning.",
    )

    @field_validator("host", "port")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return value if value is None else _secret_key(value)

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            _secret_key(key)
        return value


class ResourceName(_Model):
    """Desired-resource key and object name of one composed object; templates with
    {field.path} placeholders over the observed XR. Crossplane binds a name to its key
    for good, so taking over another step's object means using its key."""

    key: str = Field(description="Desired-resource key.")
    name: str = Field(description="Name of the object.")
    objectName: str | None = Field(
        default=None,
        description="With wrap: name of the provider-kubernetes Object (default: name). "
        "Object names are cluster-wide: keep them distinct across kinds.",
    )

    @field_validator("key", "name", "objectName")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value


def _named(suffix: str) -> ResourceName:
    return ResourceName(key=f"tcp-{suffix}", name=f"{{metadata.name}}-tcp-{suffix}")


class Resources(_Model):
    """Keys and names of the data-path objects. A role not given here gets key
    <keyPrefix>-<role> and name {metadata.name}-tcp-<role>, followed by -<keyPrefix without
    tcp-> unless the prefix is tcp (the defaults below: the pipeline's first TCPAccess step)."""

    listenerSet: ResourceName = Field(default_factory=lambda: _named("listenerset"))
    route: ResourceName = Field(default_factory=lambda: _named("route"))
    networkPolicy: ResourceName = Field(default_factory=lambda: _named("networkpolicy"))
    referenceGrant: ResourceName = Field(default_factory=lambda: _named("referencegrant"))


class ConnectionSecret(_Model):
    """A Secret holding the connection details, for Crossplane v2 XRs (they ignore XR
    connection details)."""

    name: str = Field(description="Secret name; a template over the XR.")
    namespace: str | None = Field(
        default=None,
        description="Secret namespace; a template. Default: the XR's namespace, else the "
        "backend namespace.",
    )


class Patch(_Model):
    """Write the allocation into a resource an earlier step returned, or into the XR."""

    resource: str | None = Field(
        default=None,
        description="Desired-resource key of an earlier step's resource; omit it to patch the "
        "XR itself (then fieldPath must be below status).",
    )
    fieldPath: str = Field(description="Where to write, e.g. spec.forProvider.values.x.")
    value: Literal["host", "port", "hostPort"] = Field(
        description="host (the shard hostname), port (a number) or hostPort (host:port)."
    )

    @field_validator("fieldPath")
    @classmethod
    def _path(cls, value: str) -> str:
        fieldpath.split(value)
        return value

    @model_validator(mode="after")
    def _composite_status_only(self) -> "Patch":
        if self.resource is None and fieldpath.split(self.fieldPath)[0] != "status":
            raise ValueError("fieldPath: without resource the XR is patched, below status only")
        return self


class DataPlane(_Model):
    """Where the Gateway's proxy pods run, for the NetworkPolicy's ingress rule."""

    namespace: str | None = Field(
        default=None,
        description="Namespace of the proxy pods (default: gatewayNamespace). Envoy Gateway "
        "runs them in its own namespace (envoy-gateway-system) unless configured otherwise.",
    )
    podSelector: dict[str, str] = Field(
        default_factory=dict, description="Labels of the proxy pods (empty: any pod)."
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return value if value is None else _dns_label(value, "namespace")


class Wrap(_Model):
    """Wrap every object in a provider-kubernetes Object (required on Crossplane v1.x)."""

    providerConfigName: str = Field(
        default="default", description="provider-kubernetes ProviderConfig to use."
    )
    providerConfigFromLabel: str | None = Field(
        default=None,
        description="An XR label whose value, when set, overrides providerConfigName.",
    )


class TCPAccess(_Model):
    """Give the XR one sticky external TCP port on a shard of a Gateway pool."""

    apiVersion: Literal["tcp.fn.servala.io/v1alpha1"] = API_VERSION
    kind: Literal["TCPAccess"] = "TCPAccess"
    pool: str = Field(description="Pool name: value of label tcp.fn.servala.io/pool.")
    gatewayNamespace: str = Field(description="Namespace of the shard Gateways and claims.")
    gatewayAPI: Literal["v1.4", "v1.5", "v1.6"] = Field(
        default="v1.6",
        description="Gateway API release: v1.4 (XListenerSet, TCPRoute v1alpha2), "
        "v1.5 (ListenerSet v1, TCPRoute v1alpha2), v1.6 (ListenerSet v1, TCPRoute v1).",
    )
    placement: Literal["Backend", "Gateway"] = Field(
        default="Backend",
        description="Backend: ListenerSet and TCPRoute in the backend namespace. Gateway: in "
        "gatewayNamespace, with a ReferenceGrant in the backend namespace.",
    )
    enabled: bool = Field(default=True, description="Turn the step off for every XR.")
    enabledFromFieldPath: str | None = Field(
        default=None,
        description="An XR field that turns the step on: equal to enabledValue, or truthy.",
    )
    enabledValue: str | None = Field(
        default=None, description="The value of enabledFromFieldPath that turns the step on."
    )
    listenerName: str = Field(default="tcp", description="Name of the tenant's listener.")
    backend: Backend
    gateways: list[StaticGateway] | None = Field(
        default=None,
        description="Static shards, indexed from 1 in list order; when set, no Gateway lookup.",
    )
    connectionDetails: ConnectionDetailKeys = Field(default_factory=ConnectionDetailKeys)
    statusPath: str = Field(
        default="status.tcpAccess",
        description="Where in the XR the allocation is published. Unless given, a later "
        "TCPAccess step of the same pipeline publishes at status.tcpAccess-<pool>-<listenerName>.",
    )
    keyPrefix: str | None = Field(
        default=None,
        description="Prefix of this step's desired-resource keys (<keyPrefix>-claim-<port>, "
        "<keyPrefix>-ticket, ...), also in its default object names. Default: tcp for the "
        "pipeline's first TCPAccess step, tcp-<pool>-<listenerName> for later ones. Crossplane "
        "binds an object to its key for good: never change it for a step that has tenants.",
    )
    dataPlane: DataPlane = Field(default_factory=DataPlane)
    wrap: Wrap | None = Field(
        default=None,
        description="Wrap objects in provider-kubernetes Objects; required on Crossplane v1.x.",
    )
    resources: Resources = Field(default_factory=Resources)
    respectLegacyAllocations: bool = Field(
        default=False,
        description="Treat ports held by AppCat's allocation webhook as taken: its Leases "
        "tcp-port-<port> and the listeners of XListenerSets labelled "
        "appcat.vshn.io/tcpgateway=true behind a shard Gateway.",
    )
    patches: list[Patch] = Field(
        default_factory=list,
        description="Write the allocation into earlier steps' resources or the XR's status.",
    )
    connectionSecret: ConnectionSecret | None = Field(
        default=None, description="Also compose a Secret with the connection details."
    )

    @field_validator("pool", "gatewayNamespace", "listenerName")
    @classmethod
    def _labels_valid(cls, value: str, info) -> str:
        return _dns_label(value, info.field_name)

    @field_validator("statusPath")
    @classmethod
    def _status_path(cls, value: str) -> str:
        return _status_path(value)

    @field_validator("keyPrefix")
    @classmethod
    def _key_prefix(cls, value: str | None) -> str | None:
        return value if value is None else _dns_label(value, "keyPrefix")

    @field_validator("enabledFromFieldPath")
    @classmethod
    def _enabled_path(cls, value: str | None) -> str | None:
        if value is not None:
            fieldpath.split(value)
        return value

    @model_validator(mode="after")
    def _unique_gateways(self) -> "TCPAccess":
        if self.gateways is not None:
            if not self.gateways:
                raise ValueError("gateways: list is empty; omit it to look Gateways up")
            names = [g.name for g in self.gateways]
            if len(set(names)) != len(names):
                raise ValueError("gateways: names must be unique")
        return self

    @property
    def data_plane_namespace(self) -> str:
        return self.dataPlane.namespace or self.gatewayNamespace

    @property
    def pod_port(self) -> int:
        return self.backend.podPort or self.backend.port


PROVIDER_CAPACITY = {"cloudscale": 100, "exoscale": 10}
MAX_INFRASTRUCTURE_ANNOTATIONS = 16  # Gateway API v1.6; 8 before
MAX_INFRASTRUCTURE_LABELS = 8


class ListenerNamespaces(_Model):
    """Which namespaces may attach ListenerSets to the shard Gateways."""

    from_: Literal["All", "Selector", "Same"] = Field(default="All", alias="from")
    selector: dict | None = Field(
        default=None, description="A LabelSelector over namespaces, when from is Selector."
    )

    @model_validator(mode="after")
    def _selector(self) -> "ListenerNamespaces":
        if self.from_ == "Selector" and not self.selector:
            raise ValueError("selector is required when from is Selector")
        return self


class Infrastructure(_Model):
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Merged into each Gateway's spec.infrastructure."
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Merged into each Gateway's spec.infrastructure."
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_INFRASTRUCTURE_LABELS:
            raise ValueError(f"at most {MAX_INFRASTRUCTURE_LABELS} labels (Gateway API)")
        return value


class GatewayPool(_Model):
    """Compose the shard Gateways of one pool, add shards before it runs full."""

    apiVersion: Literal["tcp.fn.servala.io/v1alpha1"] = API_VERSION
    kind: Literal["GatewayPool"] = "GatewayPool"
    pool: str = Field(description="Pool name: value of label tcp.fn.servala.io/pool.")
    namespace: str = Field(description="Namespace of the shard Gateways and the claims.")
    gatewayClassName: str = Field(description="GatewayClass of the shard Gateways.")
    provider: Literal["cloudscale", "exoscale", "custom"] = Field(
        default="cloudscale",
        description="Load balancer provider: cloudscale (100 listeners per IP), exoscale (10), "
        "or custom (set capacity).",
    )
    capacity: int | None = Field(
        default=None,
        ge=2,
        description="Listeners per shard including the Gateway's own; required for custom, "
        "may lower a provider's figure, never raise it.",
    )
    ports: str = Field(description="Port range of the pool; shard n owns its n-th slice.")
    hostname: str = Field(description="DNS name per shard, with {index} (from 1).")
    minShards: int = Field(default=1, ge=0)
    maxShards: int = Field(default=50, ge=1)
    headroom: int = Field(
        default=5,
        ge=1,
        description="Free tenant slots to keep (at least 1: a pool with none left grows).",
    )
    allowedListenerNamespaces: ListenerNamespaces = Field(default_factory=ListenerNamespaces)
    infrastructure: Infrastructure = Field(default_factory=Infrastructure)
    statusPath: str = Field(default="status.pool", description="Where the pool reports.")
    wrap: Wrap | None = Field(
        default=None,
        description="Wrap Gateways in provider-kubernetes Objects; required on Crossplane v1.x. "
        "Must match the tenant steps' wrap: it decides whether claims are Leases or Objects.",
    )

    @field_validator("pool", "namespace")
    @classmethod
    def _labels_valid(cls, value: str, info) -> str:
        return _dns_label(value, info.field_name)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_port_range(value)
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if "{index}" not in value:
            raise ValueError(f"{value!r} must contain {{index}}, e.g. db{{index}}.example.ch")
        if not is_dns_subdomain(value.replace("{index}", "1")):
            raise ValueError(f"{value!r} is not a DNS name")
        return value

    @field_validator("statusPath")
    @classmethod
    def _status_path(cls, value: str) -> str:
        return _status_path(value)

    @model_validator(mode="after")
    def _consistent(self) -> "GatewayPool":
        if self.provider == "custom" and self.capacity is None:
            raise ValueError("capacity: required when provider is custom")
        limit = PROVIDER_CAPACITY.get(self.provider)
        if limit is not None and self.capacity is not None and self.capacity > limit:
            raise ValueError(
                f"capacity: {self.capacity} exceeds the {self.provider} limit of {limit} "
                "listeners per IP"
            )
        if self.minShards > self.maxShards:
            raise ValueError(f"minShards: {self.minShards} is above maxShards {self.maxShards}")
        start, end = parse_port_range(self.ports)
        needed = self.maxShards * self.shard_capacity
        if end - start + 1 < needed:
            raise ValueError(
                f"ports: {self.ports} holds {end - start + 1} ports; maxShards x capacity "
                f"needs {needed}"
            )
        return self

    @property
    def shard_capacity(self) -> int:
        return self.capacity or PROVIDER_CAPACITY[self.provider]

    def slice(self, index: int) -> tuple[int, int]:
        """Shard `index` (from 1) owns the index-th slice of `capacity` ports."""
        start, _ = parse_port_range(self.ports)
        first = start + (index - 1) * self.shard_capacity
        return first, first + self.shard_capacity - 1

    def hostname_for(self, index: int) -> str:
        return self.hostname.replace("{index}", str(index))
