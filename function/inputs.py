"""The step's input, as composition authors write it in a Composition pipeline.

The CRDs in package/input/ are generated from these models (`python -m function.crd`).
"""

import fnmatch
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from function import fieldpath, labels, sourceranges
from function.names import is_dns_1035_label, is_dns_label, is_dns_subdomain
from function.tickets import DEFAULT_TTL, MAX_TTL

API_VERSION = "tcp.fn.servala.io/v1alpha1"


def _not_bool(value: object) -> object:
    # pydantic reads true as 1: a port or a count given as a bool is a mistake, not a number.
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not a boolean")
    return value


def whole(**bounds: int) -> type[int]:
    """A whole number within `bounds` (ge, le). Struct numbers arrive as floats: 5432.0 is
    5432, 5432.5 is refused. (The bounds come first, or they are lost from the CRD.)"""
    return Annotated[int, Field(**bounds), BeforeValidator(_not_bool)]  # type: ignore[return-value]


Port = whole(ge=1, le=65535)
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


DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_PORT_REST = 168 * 3600  # a week: longer keeps slots from tenants for little gain


def parse_duration(text: str, most: int) -> int:
    """Seconds in a duration such as `1h30m`, `90s` or `0`; raise ValueError naming what is
    wrong."""
    match = DURATION.match(text.strip())
    if text.strip() == "0":
        return 0
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration such as 1h, 30m, 90s or 0")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total > most:
        raise ValueError(f"{text!r} is longer than {most // 3600}h")
    return total


class _Model(BaseModel):
    # Unknown fields are typos: reject them so the author learns at once.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _dns_label(value: str, what: str) -> str:
    if not is_dns_label(value):
        raise ValueError(f"{what} {value!r} must be a DNS-1123 label (a-z, 0-9, '-', <= 63)")
    return value


SERVICE_NAME_RULE = "must be a DNS-1035 label (a-z, 0-9, '-', starting with a letter, <= 63)"


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
    service: str | None = Field(
        default=None,
        description="Name of the Service in that namespace (templates allowed). Give this or "
        "serviceSelector.",
    )
    serviceSelector: dict[str, str] | None = Field(
        default=None,
        description="Labels of the Service (values are templates), for a Service whose name "
        "no template can give (a Helm chart's fullname rule): the Service in the backend "
        "namespace with these labels and the port below. Until exactly one exists the route "
        "is not built (condition reason BackendMissing) and whatever the XR has is kept.",
    )
    port: Port = Field(description="Service port the route targets.")
    podSelector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels of the backend pods, for the NetworkPolicy (empty: all pods).",
    )
    podPort: Port | None = Field(
        default=None,
        description="Pod port the NetworkPolicy opens (default: the Service port).",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        # A template is checked once rendered for the XR.
        if not fieldpath.placeholders(value):
            _dns_label(value, "namespace")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str | None) -> str | None:
        literal = value is not None and not fieldpath.placeholders(value)
        if literal and not is_dns_1035_label(value):
            raise ValueError(f"service {value!r} {SERVICE_NAME_RULE}")
        return value

    @model_validator(mode="after")
    def _one_service(self) -> "Backend":
        if (self.service is None) == (self.serviceSelector is None):
            raise ValueError("give exactly one of service and serviceSelector")
        if self.serviceSelector is not None and not self.serviceSelector:
            raise ValueError("serviceSelector: give at least one label")
        return self


class StaticGateway(_Model):
    """A shard given in the input instead of looked up (AppCat's static gateway list)."""

    name: str = Field(description="Gateway name in gatewayNamespace.")
    hostname: str | None = Field(default=None, description="DNS name tenants connect to.")
    ports: str = Field(description="Port range of this shard, 'start-end' inclusive.")
    capacity: whole(ge=2) = Field(
        description="Listeners this Gateway may carry, including its own."
    )
    listenerPorts: list[Port] = Field(
        default_factory=list,
        max_length=64,
        description="Ports of the Gateway's own listeners (spec.listeners): never given to a "
        "tenant. Each takes a slot of the capacity; none listed counts as one outside ports.",
    )

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
    securityPolicy: ResourceName = Field(default_factory=lambda: _named("securitypolicy"))


class SourceRanges(_Model):
    """The tenant's source-address allowlist (AppCat's ipFilter), enforced by an Envoy
    Gateway SecurityPolicy on its TCPRoute. Needs Envoy Gateway v1.7.4 / v1.8.1 or later and
    a shard that keeps the client's address (GatewayPool clientAddress)."""

    fromFieldPath: str | None = Field(
        default=None,
        description="XR field holding a list of IPv4/IPv6 CIDRs or addresses, e.g. "
        "spec.parameters.network.ipFilter. Unset, or the field not set: default.",
    )
    default: list[str] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        description="The ranges when the field is not set. A list admitting everyone "
        "(0.0.0.0/0, with ::/0 or no IPv6 entry; or empty) composes no SecurityPolicy.",
    )
    trustUnreportedPolicy: StrictBool = Field(
        default=False,
        description="Take a SecurityPolicy that exists but carries no status from Envoy "
        "Gateway as in force. Envoy Gateway up to v1.7 reports none for a policy on a route "
        "attached through an XListenerSet (gatewayAPI v1.4), so such a tenant never becomes "
        "Ready without it. Risk: a policy Envoy Gateway did not apply leaves the port open.",
    )

    @field_validator("fromFieldPath")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            fieldpath.split(value)
        return value

    @field_validator("default")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        try:
            sourceranges.parse(value)
        except sourceranges.InvalidSourceRange as err:
            raise ValueError(str(err)) from None
        return value


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
        description="Desired-resource key of an earlier step's resource, a template like "
        "{metadata.name}; omit it to patch the XR itself (then fieldPath must be below status).",
    )
    fieldPath: str = Field(description="Where to write, e.g. spec.forProvider.values.x.")
    value: Literal["host", "port", "hostPort"] | None = Field(
        default=None,
        description="host (the shard hostname), port (a number) or hostPort (host:port). "
        "Give this or literal.",
    )
    literal: StrictBool | int | float | str | None = Field(
        default=None,
        description="A fixed value to write once the XR holds a port (e.g. false to turn a "
        "setting on only with TCP access).",
    )

    @field_validator("fieldPath")
    @classmethod
    def _path(cls, value: str) -> str:
        fieldpath.split(value)
        return value

    @model_validator(mode="after")
    def _one_value(self) -> "Patch":
        if (self.value is None) == (self.literal is None):
            raise ValueError("give exactly one of value and literal")
        return self

    @model_validator(mode="after")
    def _composite_status_only(self) -> "Patch":
        parts = fieldpath.split(self.fieldPath)
        if self.resource is None and (parts[0] != "status" or len(parts) < 2):
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


PROVIDER_CONFIG_PATTERN = re.compile(r"^[a-z0-9*]([-a-z0-9.*]{0,251}[a-z0-9*])?$")


class Wrap(_Model):
    """Wrap every object in a provider-kubernetes Object (required on Crossplane v1.x)."""

    providerConfigName: str = Field(
        default="default", description="provider-kubernetes ProviderConfig to use."
    )
    providerConfigFromLabel: str | None = Field(
        default=None,
        description="An XR label whose value, when set and allowed by "
        "allowedProviderConfigs, overrides providerConfigName. Tenants control their XR's "
        "labels (Crossplane v1.x copies claim labels to the XR): without "
        "allowedProviderConfigs the label is ignored.",
    )
    allowedProviderConfigs: list[str] | None = Field(
        default=None,
        max_length=64,
        description="The ProviderConfigs providerConfigFromLabel may choose: names, with * "
        "matching any run of characters (e.g. kubernetes-*). A value outside the list is "
        "ignored with a Warning, and providerConfigName is used.",
    )

    @field_validator("allowedProviderConfigs")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or ():
            if not PROVIDER_CONFIG_PATTERN.match(pattern):
                raise ValueError(f"{pattern!r} is not a ProviderConfig name (with * wildcards)")
        return value

    def provider_config(self, xr_labels: dict) -> tuple[str, str | None]:
        """The ProviderConfig for this XR, and a Warning when its label was not followed."""
        label = self.providerConfigFromLabel
        value = xr_labels.get(label) if label else None
        if not isinstance(value, str) or not value or value == self.providerConfigName:
            return self.providerConfigName, None
        if self.allowedProviderConfigs is None:
            return self.providerConfigName, (
                f"wrap.providerConfigFromLabel: the XR's label {label}={value!r} is ignored; "
                "list the ProviderConfigs it may name in wrap.allowedProviderConfigs to allow it"
            )
        if any(fnmatch.fnmatchcase(value, p) for p in self.allowedProviderConfigs):
            return value, None
        return self.providerConfigName, (
            f"wrap.providerConfigFromLabel: the XR's label {label}={value!r} names a "
            f"ProviderConfig outside wrap.allowedProviderConfigs; using "
            f"{self.providerConfigName!r}"
        )


# XR fields a template may read: what Crossplane and the platform set, never the tenant. A
# tenant sets its claim's (or Namespaced XR's) spec, labels and annotations, and Crossplane
# v1.x copies them to the XR: a template over them could send the route, the grant and the
# NetworkPolicy into another tenant's namespace. The name is the tenant's choice too, but
# unique (per namespace) and never another tenant's.
PLATFORM_FIELDS = ("metadata.name", "metadata.uid", "metadata.namespace")


def _platform_field(path: str) -> bool:
    return path in PLATFORM_FIELDS or path.startswith("status.")


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
    enabled: StrictBool = Field(default=True, description="Turn the step off for every XR.")
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
    respectLegacyAllocations: StrictBool = Field(
        default=False,
        description="Treat ports held by AppCat's allocation webhook as taken: its Leases "
        "tcp-port-<port> and the listeners of XListenerSets labelled "
        "appcat.vshn.io/tcpgateway=true behind a shard Gateway.",
    )
    legacyLeaseNamespace: str | None = Field(
        default=None,
        description="Where AppCat's webhook writes its tcp-port-<port> Leases (its "
        "tcpGatewayNamespace; default: gatewayNamespace). Leases elsewhere are not believed.",
    )
    patches: list[Patch] = Field(
        default_factory=list,
        description="Write the allocation into earlier steps' resources or the XR's status.",
    )
    connectionSecret: ConnectionSecret | None = Field(
        default=None, description="Also compose a Secret with the connection details."
    )
    sourceRanges: SourceRanges | None = Field(
        default=None,
        description="Restrict who may connect to the tenant's port (Envoy Gateway "
        "SecurityPolicy). Unset: no allowlist, no SecurityPolicy.",
    )
    ticketTTLSeconds: int = Field(
        default=DEFAULT_TTL,
        ge=60,
        le=MAX_TTL,
        description="Time to live of a waiting tenant's ticket (its Lease's "
        "leaseDurationSeconds): the tenant renews it while it waits, once half of it has "
        "passed; an XR that stops reconciling (paused, failing in a later step, deleted "
        "without garbage collection) holds up the queue for at most this long. Keep it well "
        "above the XRs' poll interval.",
    )

    templatesReadTenantFields: StrictBool = Field(
        default=False,
        description="Let the templates of backend, resources, patches and connectionSecret read "
        "any XR field, the ones tenants set (spec, labels, annotations) included. Off, they read "
        "metadata.name, metadata.uid, metadata.namespace and status.* only. Turn it on only "
        "where the XRD itself constrains those fields (an enum, a pattern).",
    )

    @field_validator("pool", "gatewayNamespace", "listenerName")
    @classmethod
    def _labels_valid(cls, value: str, info) -> str:
        return _dns_label(value, info.field_name)

    @field_validator("legacyLeaseNamespace")
    @classmethod
    def _lease_namespace(cls, value: str | None) -> str | None:
        return value if value is None else _dns_label(value, "legacyLeaseNamespace")

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
    def _templates_read_platform_fields(self) -> "TCPAccess":
        if self.templatesReadTenantFields:
            return self
        for where, template in self._templates():
            for path in fieldpath.placeholders(template):
                if not _platform_field(path.strip()):
                    raise ValueError(
                        f"{where}: {{{path}}} reads an XR field tenants can set; templates "
                        f"read {', '.join(PLATFORM_FIELDS)} and status.* (set "
                        "templatesReadTenantFields to allow it)"
                    )
        return self

    def _templates(self):
        yield "backend.namespace", self.backend.namespace
        if self.backend.service is not None:
            yield "backend.service", self.backend.service
        for key, value in (self.backend.serviceSelector or {}).items():
            yield f"backend.serviceSelector.{key}", value
        for key, value in self.backend.podSelector.items():
            yield f"backend.podSelector.{key}", value
        for number, patch in enumerate(self.patches):
            if patch.resource is not None:
                yield f"patches.{number}.resource", patch.resource
        for role in ("listenerSet", "route", "networkPolicy", "referenceGrant", "securityPolicy"):
            named: ResourceName = getattr(self.resources, role)
            for field in ("key", "name", "objectName"):
                value = getattr(named, field)
                if value is not None:
                    yield f"resources.{role}.{field}", value
        if self.connectionSecret is not None:
            yield "connectionSecret.name", self.connectionSecret.name
            if self.connectionSecret.namespace is not None:
                yield "connectionSecret.namespace", self.connectionSecret.namespace

    @model_validator(mode="after")
    def _patches_beside_status(self) -> "TCPAccess":
        # The step writes its status object whole: a patch inside it, or around it, would
        # be overwritten or would overwrite it.
        status = fieldpath.split(self.statusPath)
        for number, patch in enumerate(self.patches):
            path = fieldpath.split(patch.fieldPath)
            shorter = min(len(path), len(status))
            if patch.resource is None and path[:shorter] == status[:shorter]:
                raise ValueError(
                    f"patches.{number}.fieldPath: {patch.fieldPath} overlaps statusPath "
                    f"{self.statusPath}"
                )
        return self

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


class SelectorRequirement(_Model):
    """One rule of a Kubernetes LabelSelector."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values(self) -> "SelectorRequirement":
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError("values: required for In and NotIn, not allowed otherwise")
        return self


class LabelSelector(_Model):
    """A Kubernetes LabelSelector (over namespaces)."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[SelectorRequirement] = Field(default_factory=list)


class ListenerNamespaces(_Model):
    """Which namespaces may attach ListenerSets to the shard Gateways."""

    from_: Literal["All", "Selector", "Same"] = Field(
        default="Selector",
        alias="from",
        description="Selector (namespaces the selector matches), Same (the Gateways' own "
        "namespace) or All (every namespace: anyone who may create a ListenerSet can take "
        "a free port; a Warning says so).",
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="A LabelSelector over namespaces, when from is Selector; default: "
        f'label {labels.LISTENER_NAMESPACE}: "true", which only the platform sets.',
    )

    @model_validator(mode="after")
    def _selector(self) -> "ListenerNamespaces":
        empty = self.selector is not None and not (
            self.selector.matchLabels or self.selector.matchExpressions
        )
        if self.from_ == "Selector" and empty:  # it would select every namespace
            raise ValueError("selector: an empty selector selects every namespace; use from: All")
        return self

    def allowed_listeners(self) -> dict:
        """`spec.allowedListeners.namespaces` of a shard Gateway."""
        namespaces: dict = {"from": self.from_}
        if self.from_ == "Selector":
            platform = LabelSelector(matchLabels={labels.LISTENER_NAMESPACE: "true"})
            selector = self.selector or platform
            namespaces["selector"] = selector.model_dump(exclude_defaults=True)
        return namespaces


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
    capacity: whole(ge=2) | None = Field(
        default=None,
        description="Listeners per shard including the Gateway's own; required for custom, "
        "may lower a provider's figure, never raise it.",
    )
    ports: str = Field(description="Port range of the pool; shard n owns its n-th slice.")
    portsPerShard: whole(ge=2, le=65535) | None = Field(
        default=None,
        description="Ports in a new shard's slice (default: capacity). Ports beyond the "
        "capacity are spares where freed ports rest without costing a tenant slot. Fixed for "
        "a shard's life, like its slice.",
    )
    portRest: str = Field(
        default="1h",
        description="How long a freed port rests before a tenant may claim it: a duration "
        "such as 1h, 30m or 90s, at most 168h; 0 turns resting off.",
    )
    hostname: str = Field(description="DNS name per shard, with {index} (from 1).")
    minShards: whole(ge=0) = Field(default=1)
    maxShards: whole(ge=1) = Field(default=50)
    headroom: whole(ge=1) = Field(
        default=5,
        description="Free tenant slots to keep (at least 1: a pool with none left grows).",
    )
    allowedListenerNamespaces: ListenerNamespaces | None = Field(
        default=None,
        description="Which namespaces may attach ListenerSets to the shard Gateways. Unset: "
        "a shard keeps what its Gateway admits, a new shard gets from: Selector on label "
        f'{labels.LISTENER_NAMESPACE}: "true". Set: every shard gets it.',
    )
    gatewayAPI: Literal["v1.4", "v1.5", "v1.6"] = Field(
        default="v1.6",
        description="Gateway API release of the tenant steps (their gatewayAPI): which "
        "ListenerSet kind carries tenant listeners, v1.4 XListenerSet, v1.5 and v1.6 "
        "ListenerSet.",
    )
    infrastructure: Infrastructure = Field(default_factory=Infrastructure)
    statusPath: str = Field(default="status.pool", description="Where the pool reports.")
    readBudgetKiB: whole(ge=1, le=65536) = Field(
        default=900,
        description="What the claims and listener sets the pool step reads may add to one "
        "request, in KiB. A pool that fits is read whole every reconcile; a bigger one is "
        "recounted a window of shards at a time. The default keeps every request of a full "
        "pool (50,000 tenants) under gRPC's default 4 MiB.",
    )
    clientAddress: Literal["ProxyProtocol", "Local", "Unknown"] = Field(
        default="Unknown",
        description="How a shard keeps the client's address, which tenants' source "
        "allowlists need: ProxyProtocol (a ClientTrafficPolicy per shard and the provider's "
        "PROXY protocol annotation; cloudscale, or custom with its annotation in "
        "infrastructure), Local (the platform runs Envoy's Service with "
        "externalTrafficPolicy Local), Unknown. Switching PROXY protocol on or off applies "
        "to new shards only, unless applyClientAddressToExistingShards.",
    )
    applyClientAddressToExistingShards: StrictBool = Field(
        default=False,
        description="Also switch PROXY protocol on or off on existing shards. On "
        "cloudscale this recreates each load balancer's pools: a short outage for every "
        "tenant of a shard.",
    )
    wrap: Wrap | None = Field(
        default=None,
        description="Wrap Gateways in provider-kubernetes Objects; required on Crossplane v1.x. "
        "Must match the tenant steps' wrap: it decides whether claims and tickets are Leases or "
        "Objects.",
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

    @field_validator("portRest")
    @classmethod
    def _port_rest(cls, value: str) -> str:
        parse_duration(value, MAX_PORT_REST)
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
    def _proxy_protocol(self) -> "GatewayPool":
        if self.clientAddress == "ProxyProtocol" and self.provider == "exoscale":
            raise ValueError(
                "clientAddress: Exoscale load balancers cannot send PROXY protocol; "
                "use Local (externalTrafficPolicy Local on Envoy's Service)"
            )
        return self

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
        if self.portsPerShard is not None and self.portsPerShard < self.shard_capacity:
            raise ValueError(
                f"portsPerShard: {self.portsPerShard} is below capacity {self.shard_capacity}"
            )
        start, end = parse_port_range(self.ports)
        needed = self.maxShards * self.slice_width
        if end - start + 1 < needed:
            raise ValueError(
                f"ports: {self.ports} holds {end - start + 1} ports; maxShards x "
                f"{'portsPerShard' if self.portsPerShard else 'capacity'} needs {needed}"
            )
        return self

    @property
    def shard_capacity(self) -> int:
        return self.capacity or PROVIDER_CAPACITY[self.provider]

    @property
    def slice_width(self) -> int:
        return self.portsPerShard or self.shard_capacity

    @property
    def rest_seconds(self) -> int:
        return parse_duration(self.portRest, MAX_PORT_REST)

    @property
    def read_budget(self) -> int:
        """readBudgetKiB in bytes."""
        return int(self.readBudgetKiB) * 1024

    def slice(self, index: int) -> tuple[int, int]:
        """Shard `index` (from 1) owns the index-th slice of `portsPerShard` ports."""
        start, _ = parse_port_range(self.ports)
        first = start + (index - 1) * self.slice_width
        return first, first + self.slice_width - 1

    def hostname_for(self, index: int) -> str:
        return self.hostname.replace("{index}", str(index))
