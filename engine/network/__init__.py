"""Networking of containers: a bridge per stack network, a veth pair per container and
network, addresses chosen without overlapping the host's, the firewall that keeps networks
apart, optional outbound NAT, and the /etc/hosts and /etc/resolv.conf of containers.
libnftables is loaded only by the calls that talk to the kernel."""

from engine.network.bridge import (
    BridgeSpec,
    bridge_exists,
    bridge_name,
    enable_ip_forwarding,
    ensure_bridge,
    remove_bridge,
)
from engine.network.errors import NetworkError
from engine.network.firewall import BridgeFirewall, ensure_firewall, firewalls, remove_firewall
from engine.network.hosts import (
    FALLBACK_NAMESERVERS,
    HostsEntry,
    render_hosts,
    render_resolv_conf,
    write_in_place,
)
from engine.network.ipam import allocate_address, allocate_subnet, gateway_of, host_networks
from engine.network.nat import ensure_masquerade, masquerade_rules, remove_masquerade
from engine.network.netns import netns_rtnl, netns_socket, open_netns, run_in_netns
from engine.network.nftables import nftables_ruleset
from engine.network.veth import (
    Attachment,
    attach,
    attached_to,
    detach,
    link_exists,
    loopback_up,
    veth_name,
)

__all__ = [
    "FALLBACK_NAMESERVERS",
    "Attachment",
    "BridgeFirewall",
    "BridgeSpec",
    "HostsEntry",
    "NetworkError",
    "allocate_address",
    "allocate_subnet",
    "attach",
    "attached_to",
    "bridge_exists",
    "bridge_name",
    "detach",
    "enable_ip_forwarding",
    "ensure_bridge",
    "ensure_firewall",
    "ensure_masquerade",
    "firewalls",
    "gateway_of",
    "host_networks",
    "link_exists",
    "loopback_up",
    "masquerade_rules",
    "netns_rtnl",
    "netns_socket",
    "nftables_ruleset",
    "open_netns",
    "remove_bridge",
    "remove_firewall",
    "remove_masquerade",
    "render_hosts",
    "render_resolv_conf",
    "run_in_netns",
    "veth_name",
    "write_in_place",
]
