"""What kind of address a network peer is: loopback, link-local, the cluster's services or pods, private, public.

A detection about outbound traffic needs to tell "the pod called the API server's service IP" from "the pod
called an address on the internet" without knowing the cluster's address plan. The sources put the class of
each event's remote address in ``network.remote_class`` as they normalize it, so the class is part of the
stored event and analysts can filter on it too.

The cluster's own ranges are configuration (``VIGIL_SERVICE_CIDRS``, ``VIGIL_POD_CIDRS``: comma-separated
CIDRs). They are checked before the generic classes, because a cluster's ranges usually lie inside the private
ones and "a pod address" says more than "private". The normalizers run with a fixed signature inside the stream
worker and replay, so the ranges are set once per process with :func:`configure` (the ``vigil`` command does it
after loading its settings); until then they come from the environment.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from functools import lru_cache

from vigil.config import ConfigError

log = logging.getLogger(__name__)

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges any network may use for itself (RFC 1918, carrier-grade NAT's RFC 6598, IPv6 unique-local RFC 4193).
#: Python's ``is_private`` also counts documentation and benchmarking ranges, which no network uses: those are
#: ``reserved`` here, with every other address that is neither private nor globally routable.
PRIVATE_RANGES = tuple(ipaddress.ip_network(cidr) for cidr in
                       ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))

#: Distinct addresses whose class is remembered: a node talks to few peers, so most lookups are hits.
_CACHE_SIZE = 8192


class AddressClasses:
    """Classifies addresses with the cluster's service and pod ranges; remembers recent answers."""

    def __init__(self, service_ranges: tuple[_Network, ...] = (), pod_ranges: tuple[_Network, ...] = ()) -> None:
        self.service_ranges = service_ranges
        self.pod_ranges = pod_ranges
        self.classify = lru_cache(maxsize=_CACHE_SIZE)(self._classify)
        self.is_api_service = lru_cache(maxsize=_CACHE_SIZE)(self._is_api_service)

    @classmethod
    def from_text(cls, service_cidrs: str, pod_cidrs: str) -> AddressClasses:
        """From comma-separated CIDR lists; raises ConfigError naming the setting and the bad range."""
        return cls(parse_ranges(service_cidrs, "VIGIL_SERVICE_CIDRS"), parse_ranges(pod_cidrs, "VIGIL_POD_CIDRS"))

    def _is_api_service(self, address: str) -> bool:
        """Whether ``address`` is the ``kubernetes`` service's ClusterIP: the API server takes the first address of
        the (first) service range for itself, which is what pods find in ``KUBERNETES_SERVICE_HOST``. Remembered
        per address (``is_api_service``), as classes are: parsing an address costs more than a detection."""
        if not self.service_ranges:
            return False
        ip = _ip(address)
        return ip is not None and any(ip == network.network_address + 1 for network in self.service_ranges[:1])

    def _classify(self, address: str) -> str:
        """The class of ``address`` (one of :data:`vigil.event.ADDRESS_CLASSES`), "" when it is not an IP address."""
        ip = _ip(address)
        if ip is None:
            return ""
        if any(ip in network for network in self.service_ranges):
            return "service"
        if any(ip in network for network in self.pod_ranges):
            return "pod"
        if ip.is_loopback:
            return "loopback"
        if ip.is_link_local:
            return "link_local"
        if ip.is_multicast:
            return "multicast"
        if ip.is_unspecified:
            return "unspecified"
        if any(ip in network for network in PRIVATE_RANGES):
            return "private"
        return "public" if ip.is_global else "reserved"


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address as an IP (an IPv4-mapped IPv6 address as its IPv4 one), ``None`` when it is not one."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])  # fe80::1%eth0: the zone is not the address
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_ranges(text: str, setting: str) -> tuple[_Network, ...]:
    """``10.96.0.0/12, fd00:10:96::/112`` as networks; raises ConfigError for a range that is not one."""
    ranges = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            ranges.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{setting}: {part.strip()!r} is not a CIDR range ({exc})") from None
    return tuple(ranges)


def from_environment(env: Mapping[str, str]) -> AddressClasses:
    return AddressClasses.from_text(env.get("VIGIL_SERVICE_CIDRS", ""), env.get("VIGIL_POD_CIDRS", ""))


_classes: AddressClasses | None = None


def configure(service_cidrs: str, pod_cidrs: str) -> None:
    """Set this process's cluster ranges (raises ConfigError for a bad range, keeping the previous ones)."""
    global _classes
    _classes = AddressClasses.from_text(service_cidrs, pod_cidrs)


def address_class(address: str) -> str:
    """The class of a peer's address with this process's cluster ranges; "" for no or no valid address."""
    return _configured().classify(address) if address else ""


def is_api_service_address(address: str) -> bool:
    """Whether ``address`` is the API server's service address with this process's service range (see
    :meth:`AddressClasses.is_api_service`); ``False`` when no service range is configured."""
    return bool(address) and _configured().is_api_service(address)


def _configured() -> AddressClasses:
    global _classes
    if _classes is None:
        try:
            _classes = from_environment(os.environ)
        except ConfigError as exc:  # the command refuses a bad range at start; here the generic classes serve
            log.warning("cluster address ranges ignored", extra={"error": str(exc)})
            _classes = AddressClasses()
    return _classes
