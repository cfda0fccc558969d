"""Gateway API releases and the apiVersions/kinds the tenant step emits for each."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavour:
    listenerset_group: str
    listenerset_version: str
    listenerset_kind: str
    tcproute_api: str
    referencegrant_api: str

    @property
    def listenerset_api(self) -> str:
        return f"{self.listenerset_group}/{self.listenerset_version}"


FLAVOURS = {
    # v1.6: ListenerSet and TCPRoute are both v1 in the standard channel.
    "v1.6": Flavour(
        "gateway.networking.k8s.io", "v1", "ListenerSet",
        "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1",
    ),
    # v1.5: ListenerSet v1 (standard); TCPRoute only v1alpha2 (experimental).
    "v1.5": Flavour(
        "gateway.networking.k8s.io", "v1", "ListenerSet",
        "gateway.networking.k8s.io/v1alpha2", "gateway.networking.k8s.io/v1beta1",
    ),
    # v1.4 and older: the experimental XListenerSet in its own API group.
    "v1.4": Flavour(
        "gateway.networking.x-k8s.io", "v1alpha1", "XListenerSet",
        "gateway.networking.k8s.io/v1alpha2", "gateway.networking.k8s.io/v1beta1",
    ),
}  # fmt: skip
