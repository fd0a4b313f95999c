/* A new container's network namespace connected to its stack networks, by the shim (in the
 * host's namespaces) over rtnetlink: per network a veth pair whose host end is a port of the
 * bridge and whose other end is made directly inside the namespace, then, from inside, that
 * end and loopback up, its addresses (IPv6 without duplicate address detection) and default
 * routes; the bridge is told where the container's addresses are (neighbour entries), so the
 * first packets to it are not held for an answer. engine/network/veth.py does the same for a
 * container that runs (the supervisor's heals), and fixes what is there. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"

#define LOOPBACK_INDEX 1

static char failure[1024];

struct request {
    union {
        struct nlmsghdr header;
        char raw[4096];
    };
};

static struct rtattr *attr(struct request *r, unsigned short type, const void *data, size_t len) {
    struct rtattr *a = (struct rtattr *)(r->raw + NLMSG_ALIGN(r->header.nlmsg_len));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), data, len);
    r->header.nlmsg_len = NLMSG_ALIGN(r->header.nlmsg_len) + RTA_ALIGN(a->rta_len);
    return a;
}

static void attr_u32(struct request *r, unsigned short type, unsigned value) {
    attr(r, type, &value, sizeof value);
}

static void attr_string(struct request *r, unsigned short type, const char *value) {
    attr(r, type, value, strlen(value) + 1);
}

static void end_nest(struct request *r, struct rtattr *nest) {
    nest->rta_len = (unsigned short)(r->raw + r->header.nlmsg_len - (char *)nest);
}

static void *start(struct request *r, unsigned short type, unsigned short flags, size_t size) {
    memset(r, 0, sizeof *r);
    r->header.nlmsg_len = (unsigned)NLMSG_LENGTH(size);
    r->header.nlmsg_type = type;
    r->header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    return NLMSG_DATA(&r->header);
}

/* Send `r` and read its answer: 0, or the errno the kernel answered. `link` (when given)
 * receives a RTM_NEWLINK answer's index and MAC address (of a RTM_GETLINK). */
static int talk(int sock, struct request *r, int *index, unsigned char *mac) {
    static unsigned seq;
    r->header.nlmsg_seq = ++seq;
    if (send(sock, r, r->header.nlmsg_len, 0) < 0) return errno;
    char buffer[16384];
    for (;;) {
        ssize_t n = recv(sock, buffer, sizeof buffer, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buffer; NLMSG_OK(h, (unsigned)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != r->header.nlmsg_seq) continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *e = NLMSG_DATA(h);
                return -e->error;
            }
            if (h->nlmsg_type == RTM_NEWLINK && index) {
                struct ifinfomsg *info = NLMSG_DATA(h);
                *index = info->ifi_index;
                int len = (int)IFLA_PAYLOAD(h);
                for (struct rtattr *a = IFLA_RTA(info); RTA_OK(a, len); a = RTA_NEXT(a, len))
                    if (a->rta_type == IFLA_ADDRESS && mac && RTA_PAYLOAD(a) == 6)
                        memcpy(mac, RTA_DATA(a), 6);
            }
        }
    }
}

static int checked(int code, const char *format, const char *a, const char *b) {
    if (!code) return 0;
    char what[512];
    snprintf(what, sizeof what, format, a, b);
    snprintf(failure, sizeof failure, "cannot %s: %s", what, strerror(code));
    return -1;
}

static int get_link(int sock, const char *name, int *index, unsigned char *mac) {
    struct request r;
    start(&r, RTM_GETLINK, 0, sizeof(struct ifinfomsg));
    attr_string(&r, IFLA_IFNAME, name);
    *index = 0;
    return talk(sock, &r, index, mac);
}

static int set_up(int sock, int index) {
    struct request r;
    struct ifinfomsg *info = start(&r, RTM_NEWLINK, 0, sizeof *info);
    info->ifi_index = index;
    info->ifi_flags = info->ifi_change = IFF_UP;
    return talk(sock, &r, NULL, NULL);
}

static int parse_mac(const char *text, unsigned char *mac) {
    unsigned v[6];
    if (sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -1;
    for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
    return 0;
}

static int add_veth(int sock, const struct network_spec *n, int bridge, int netns) {
    struct request r;
    struct ifinfomsg *info = start(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof *info);
    info->ifi_flags = info->ifi_change = IFF_UP;
    attr_string(&r, IFLA_IFNAME, n->host_ifname);
    attr_u32(&r, IFLA_MTU, (unsigned)n->mtu);
    attr_u32(&r, IFLA_MASTER, (unsigned)bridge);
    struct rtattr *linkinfo = attr(&r, IFLA_LINKINFO, NULL, 0);
    attr_string(&r, IFLA_INFO_KIND, "veth");
    struct rtattr *data = attr(&r, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = attr(&r, VETH_INFO_PEER, NULL, 0);
    struct ifinfomsg peer_info = {0};
    /* the peer's ifinfomsg, then its attributes */
    memcpy(r.raw + r.header.nlmsg_len, &peer_info, sizeof peer_info);
    r.header.nlmsg_len += (unsigned)NLMSG_ALIGN(sizeof peer_info);
    attr_string(&r, IFLA_IFNAME, n->ifname);
    attr_u32(&r, IFLA_MTU, (unsigned)n->mtu);
    attr_u32(&r, IFLA_NET_NS_FD, (unsigned)netns);
    unsigned char mac[6];
    if (n->mac && !parse_mac(n->mac, mac)) attr(&r, IFLA_ADDRESS, mac, 6);
    end_nest(&r, peer);
    end_nest(&r, data);
    end_nest(&r, linkinfo);
    return talk(sock, &r, NULL, NULL);
}

static int delete_link(int sock, int index) {
    struct request r;
    struct ifinfomsg *info = start(&r, RTM_DELLINK, 0, sizeof *info);
    info->ifi_index = index;
    return talk(sock, &r, NULL, NULL);
}

/* "ADDRESS/PREFIX" → family, bytes, prefix length. */
static int parse_interface(const char *text, int *family, unsigned char *bytes, int *prefix) {
    char copy[128];
    snprintf(copy, sizeof copy, "%s", text);
    char *slash = strchr(copy, '/');
    *prefix = slash ? atoi(slash + 1) : -1;
    if (slash) *slash = 0;
    *family = strchr(copy, ':') ? AF_INET6 : AF_INET;
    if (*prefix < 0) *prefix = *family == AF_INET ? 32 : 128;
    return inet_pton(*family, copy, bytes) == 1 ? 0 : -1;
}

static int add_address(int sock, int index, const char *text) {
    int family, prefix;
    unsigned char bytes[16];
    if (parse_interface(text, &family, bytes, &prefix)) return EINVAL;
    size_t len = family == AF_INET ? 4 : 16;
    struct request r;
    struct ifaddrmsg *a = start(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof *a);
    a->ifa_family = (unsigned char)family;
    a->ifa_prefixlen = (unsigned char)prefix;
    a->ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
    a->ifa_scope = RT_SCOPE_UNIVERSE;
    a->ifa_index = (unsigned)index;
    attr(&r, IFA_LOCAL, bytes, len);
    attr(&r, IFA_ADDRESS, bytes, len);
    if (family == AF_INET && prefix < 31) {
        unsigned char broadcast[4];
        unsigned host = prefix ? (0xffffffffu >> prefix) : 0xffffffffu;
        for (int i = 0; i < 4; i++)
            broadcast[i] = bytes[i] | (unsigned char)(host >> (8 * (3 - i)));
        attr(&r, IFA_BROADCAST, broadcast, 4);
    }
    return talk(sock, &r, NULL, NULL);
}

static int add_default_route(int sock, int index, const char *gateway) {
    int family, prefix;
    unsigned char bytes[16];
    if (parse_interface(gateway, &family, bytes, &prefix)) return EINVAL;
    struct request r;
    struct rtmsg *rt = start(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, sizeof *rt);
    rt->rtm_family = (unsigned char)family;
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_protocol = RTPROT_BOOT;
    rt->rtm_scope = RT_SCOPE_UNIVERSE;
    rt->rtm_type = RTN_UNICAST;
    attr_u32(&r, RTA_OIF, (unsigned)index);
    attr(&r, RTA_GATEWAY, bytes, family == AF_INET ? 4 : 16);
    return talk(sock, &r, NULL, NULL);
}

static int add_neighbour(int sock, int bridge, const char *address, const unsigned char *mac) {
    int family, prefix;
    unsigned char bytes[16];
    if (parse_interface(address, &family, bytes, &prefix)) return EINVAL;
    struct request r;
    struct ndmsg *nd = start(&r, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, sizeof *nd);
    nd->ndm_family = (unsigned char)family;
    nd->ndm_ifindex = bridge;
    nd->ndm_state = NUD_STALE;
    attr(&r, NDA_DST, bytes, family == AF_INET ? 4 : 16);
    attr(&r, NDA_LLADDR, mac, 6);
    return talk(sock, &r, NULL, NULL);
}

static int route_socket(void) {
    int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (sock < 0) snprintf(failure, sizeof failure, "cannot open rtnetlink: %s", strerror(errno));
    return sock;
}

/* A rtnetlink socket of the namespace `netns` (the shim stays in its own). */
static int socket_inside(int netns) {
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns, CLONE_NEWNET) != 0) {
        snprintf(failure, sizeof failure, "cannot enter the container's network namespace: %s",
                 strerror(errno));
        if (home >= 0) close(home);
        return -1;
    }
    int sock = route_socket();
    if (setns(home, CLONE_NEWNET) != 0) _exit(125);  /* never act in the container's */
    close(home);
    return sock;
}

static int attach(int host, int inside, int netns, const struct network_spec *n) {
    int bridge = 0, existing = 0;
    if (get_link(host, n->bridge, &bridge, NULL) || !bridge) {
        snprintf(failure, sizeof failure, "bridge %s does not exist (ensure the network first)",
                 n->bridge);
        return -1;
    }
    /* A host end left by an earlier namespace of the container: its pair is of no use. */
    if (!get_link(host, n->host_ifname, &existing, NULL) && existing &&
        checked(delete_link(host, existing), "remove %s%s", n->host_ifname, ""))
        return -1;
    if (checked(add_veth(host, n, bridge, netns), "create veth pair %s/%s", n->host_ifname,
                n->ifname))
        return -1;
    int end = 0;
    unsigned char mac[6] = {0};
    if (get_link(inside, n->ifname, &end, mac) || !end) {
        snprintf(failure, sizeof failure, "%s vanished from the namespace as it was made",
                 n->ifname);
        return -1;
    }
    if (checked(set_up(inside, end), "bring %s up%s", n->ifname, "") ||
        checked(set_up(inside, LOOPBACK_INDEX), "bring lo up%s%s", "", "") ||
        checked(add_address(inside, end, n->address), "add address %s to %s", n->address,
                n->ifname) ||
        (n->address6 && checked(add_address(inside, end, n->address6), "add address %s to %s",
                                n->address6, n->ifname)) ||
        (n->gateway && checked(add_default_route(inside, end, n->gateway),
                               "add a default route via %s on %s", n->gateway, n->ifname)) ||
        (n->gateway6 && checked(add_default_route(inside, end, n->gateway6),
                                "add a default route via %s on %s", n->gateway6, n->ifname)))
        return -1;
    if (n->mac) parse_mac(n->mac, mac);
    char mac_text[32], address[128];
    snprintf(mac_text, sizeof mac_text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
             mac[2], mac[3], mac[4], mac[5]);
    const char *addresses[2] = {n->address, n->address6};
    for (int i = 0; i < 2; i++) {
        if (!addresses[i]) continue;
        snprintf(address, sizeof address, "%s", addresses[i]);
        char *slash = strchr(address, '/');
        if (slash) *slash = 0;
        char what[256];
        snprintf(what, sizeof what, "tell %s that %s is at %%s%%s", n->bridge, address);
        if (checked(add_neighbour(host, bridge, address, mac), what, mac_text, ""))
            return -1;
    }
    return 0;
}

const char *plumb(const struct spec *spec, int pid) {
    if (!has_namespace(spec, "net") || *spec->join_net) return NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
    int netns = open(path, O_RDONLY | O_CLOEXEC);
    if (netns < 0) {
        snprintf(failure, sizeof failure,
                 "cannot open the network namespace of the first process: %s", strerror(errno));
        return failure;
    }
    int host = -1, inside = socket_inside(netns), result = -1;
    if (inside < 0) goto done;
    if (!spec->network_count) {
        result = checked(set_up(inside, LOOPBACK_INDEX), "bring lo up%s%s", "", "");
        goto done;
    }
    host = route_socket();
    if (host < 0) goto done;
    result = 0;
    for (int i = 0; i < spec->network_count && !result; i++)
        result = attach(host, inside, netns, &spec->networks[i]);
done:
    if (host >= 0) close(host);
    if (inside >= 0) close(inside);
    close(netns);
    return result ? failure : NULL;
}
