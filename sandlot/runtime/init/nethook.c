/*
 * sandlot-init net-hook: the runc createRuntime hook that wires a sandbox's network.
 *
 * Usage: sandlot-init net-hook --veth NAME --host-address A.B.C.D/N --address A.B.C.D/N
 *                             [--ping-groups LOW-HIGH]
 *
 * Why it exists
 * -------------
 * runc has to create each sandbox's network namespace itself, so that the namespace belongs
 * to the sandbox's user namespace: CRIU refuses to checkpoint a sandbox whose network
 * namespace belongs to another user namespace. So the veth cannot be prepared in advance; it
 * is wired from a runc createRuntime hook, which runc also runs on `runc restore`, when the
 * namespace is new again. The hook is on the critical path of every create and restore, so it
 * speaks rtnetlink itself, a dozen syscalls, where running `ip` several times costs ~8 ms. It
 * lives in this binary because that one is already built, static, for every host.
 *
 * What it does
 * ------------
 * runc runs it in the host's namespaces, as root, with the container's state JSON on stdin.
 *   1. Read the state (at most 64 KiB), take "pid", open /proc/PID/ns/net.
 *   2. Create the veth pair: NAME in the host's namespace, its peer "eth0" in the sandbox's.
 *   3. Host side: disable IPv6 on NAME, add the host address, set NAME up.
 *   4. setns() into the sandbox's namespace and, on a new rtnetlink socket (a socket stays in
 *      the namespace it was made in): lo up, disable IPv6 on eth0, add the address, eth0 up,
 *      default route via the host address.
 *   5. With --ping-groups, set net.ipv4.ping_group_range there: the groups that may open ICMP
 *      datagram sockets, which is how ping works without CAP_NET_RAW. LOW and HIGH are host
 *      gids (the kernel reads them in the writer's user namespace, the host's here). CRIU
 *      does not carry the range over a checkpoint, so every restore needs this step again.
 * IPv6 is disabled before a link comes up, so that it never gets a link-local address; after
 * setns(), /proc/sys/net shows the calling thread's new namespace, so the same paths serve
 * both sides. The first failure ends the hook with one line on stderr (the step and the errno
 * string, with the kernel's extended-ACK message when there is one) and exit 1, which makes
 * runc fail the create; a veth pair made by then is deleted again, so that a retry does not
 * meet it. Usage errors exit 2.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include "sandlot-init.h"

#define NH_STATE_MAX (64 * 1024)
#define NH_MSG_MAX 1024
#define NH_PEER "eth0"

struct nh_cidr {
    const char *text;     /* as given, for messages */
    struct in_addr addr;
    unsigned prefix;
};

struct nh_args {
    const char *veth;
    struct nh_cidr host, sandbox;
    const char *ping_groups; /* "LOW HIGH", or NULL to leave the range alone */
};

typedef union {
    struct nlmsghdr h;
    char raw[NH_MSG_MAX];
} nh_msg;

static struct {
    int host_nl;         /* rtnetlink socket in the host's namespace, or -1 */
    const char *veth;    /* set once the pair exists: it is ours to delete on failure */
    char ext_ack[256];   /* the kernel's message about the last failed request */
} nh = {.host_nl = -1};

static void nh_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sandlot-init net-hook: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: sandlot-init net-hook --veth NAME --host-address A.B.C.D/N"
                    " --address A.B.C.D/N [--ping-groups LOW-HIGH]\n");
    exit(2);
}

/* -- netlink messages */

/* Append len bytes (zeros if data is NULL), padded to the netlink alignment. */
static void *nh_put(struct nlmsghdr *h, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(h->nlmsg_len);
    if (at + NLMSG_ALIGN(len) > NH_MSG_MAX)
        abort(); /* the messages below are of fixed, small sizes */
    char *p = (char *)h + at;
    memset(p, 0, NLMSG_ALIGN(len));
    if (data)
        memcpy(p, data, len);
    h->nlmsg_len = (uint32_t)(at + NLMSG_ALIGN(len));
    return p;
}

static struct nlmsghdr *nh_start(nh_msg *m, uint16_t type, uint16_t flags, const void *fam, size_t len)
{
    memset(&m->h, 0, sizeof m->h);
    m->h.nlmsg_len = NLMSG_HDRLEN;
    m->h.nlmsg_type = type;
    m->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    nh_put(&m->h, fam, len);
    return &m->h;
}

static struct rtattr *nh_attr(struct nlmsghdr *h, uint16_t type, const void *data, size_t len)
{
    struct rtattr *a = nh_put(h, NULL, RTA_LENGTH(0));
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    nh_put(h, data, len);
    return a;
}

/* Close a nested attribute opened with nh_attr(h, type, NULL, 0). */
static void nh_nest_end(struct nlmsghdr *h, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)nest);
}

/* Keep the kernel's extended-ACK message (NLMSGERR_ATTR_MSG), if the error carries one. */
static void nh_keep_ext_ack(const struct nlmsghdr *h)
{
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS) || !(h->nlmsg_flags & NLM_F_CAPPED))
        return;
    const char *p = (const char *)h + NLMSG_LENGTH(sizeof(struct nlmsgerr));
    const char *end = (const char *)h + h->nlmsg_len;
    while (end - p >= NLA_HDRLEN) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || a->nla_len > end - p)
            return;
        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            snprintf(nh.ext_ack, sizeof nh.ext_ack, "%.*s", (int)(a->nla_len - NLA_HDRLEN), p + NLA_HDRLEN);
            return;
        }
        p += NLA_ALIGN(a->nla_len);
    }
}

static int nh_socket(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    int one = 1;
    if (fd >= 0) {
        /* Short ACKs, with the kernel's reason for a failure. Both are optional. */
        setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
        setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    }
    return fd;
}

/* Send one request and wait for its ACK. 0, or the errno the kernel answered with. */
static int nh_talk(int fd, struct nlmsghdr *req)
{
    static uint32_t seq;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    req->nlmsg_seq = ++seq;
    nh.ext_ack[0] = 0;
    if (sendto(fd, req, req->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return errno;
    for (;;) {
        union { struct nlmsghdr h; char raw[8192]; } reply;
        ssize_t n = recv(fd, &reply, sizeof reply, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        int left = (int)n;
        for (struct nlmsghdr *h = &reply.h; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != req->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                return EBADMSG;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (e->error)
                nh_keep_ext_ack(h);
            return -e->error;
        }
    }
}

/* -- rtnetlink requests; each returns 0 or an errno */

static int nh_create_veth(int fd, const char *name, int netns_fd)
{
    nh_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    uint32_t ns = (uint32_t)netns_fd;
    struct nlmsghdr *h = nh_start(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, name, strlen(name) + 1);
    struct rtattr *info = nh_attr(h, IFLA_LINKINFO, NULL, 0);
    nh_attr(h, IFLA_INFO_KIND, "veth", strlen("veth"));
    struct rtattr *data = nh_attr(h, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nh_attr(h, VETH_INFO_PEER, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, NH_PEER, sizeof NH_PEER);
    nh_attr(h, IFLA_NET_NS_FD, &ns, sizeof ns);
    nh_nest_end(h, peer);
    nh_nest_end(h, data);
    nh_nest_end(h, info);
    return nh_talk(fd, h);
}

static int nh_delete_link(int fd, const char *name)
{
    nh_msg m;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct nlmsghdr *h = nh_start(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
    nh_attr(h, IFLA_IFNAME, name, strlen(name) + 1);
    return nh_talk(fd, h);
}

static int nh_set_up(int fd, unsigned index)
{
    nh_msg m;
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_index = (int)index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP,
    };
    return nh_talk(fd, nh_start(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi));
}

static int nh_add_address(int fd, unsigned index, const struct nh_cidr *c)
{
    nh_msg m;
    struct ifaddrmsg ifa = {
        .ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)c->prefix,
        .ifa_scope = RT_SCOPE_UNIVERSE, .ifa_index = index,
    };
    struct nlmsghdr *h = nh_start(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    nh_attr(h, IFA_LOCAL, &c->addr, sizeof c->addr);
    nh_attr(h, IFA_ADDRESS, &c->addr, sizeof c->addr);
    return nh_talk(fd, h);
}

static int nh_add_default_route(int fd, unsigned index, struct in_addr gateway)
{
    nh_msg m;
    struct rtmsg rt = {
        .rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
        .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST,
    };
    uint32_t oif = index;
    struct nlmsghdr *h = nh_start(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    nh_attr(h, RTA_GATEWAY, &gateway, sizeof gateway);
    nh_attr(h, RTA_OIF, &oif, sizeof oif);
    return nh_talk(fd, h);
}

/* -- steps */

/* One line on stderr, the veth pair deleted again if we made it, exit 1. err 0: no errno. */
static void nh_fail(int err, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!err)
        fprintf(stderr, "sandlot-init net-hook: %s\n", what);
    else if (nh.ext_ack[0])
        fprintf(stderr, "sandlot-init net-hook: %s: %s (%s)\n", what, strerror(err), nh.ext_ack);
    else
        fprintf(stderr, "sandlot-init net-hook: %s: %s\n", what, strerror(err));
    if (nh.veth && nh.host_nl >= 0)
        nh_delete_link(nh.host_nl, nh.veth); /* best effort; the peer goes with it */
    exit(1);
}

static int nh_valid_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= IFNAMSIZ || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    /* What the kernel refuses, and '%', which it would take for a name template. */
    for (; *s; s++)
        if (*s == '/' || *s == ':' || *s == '%' || *s <= ' ' || *s == 0x7f)
            return 0;
    return 1;
}

static void nh_parse_cidr(const char *opt, const char *s, struct nh_cidr *c)
{
    const char *slash = strchr(s, '/');
    char ip[INET_ADDRSTRLEN];
    c->text = s;
    if (!slash || (size_t)(slash - s) >= sizeof ip)
        nh_usage("%s wants an IPv4 address with a prefix length (A.B.C.D/N), got '%s'", opt, s);
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = 0;
    const char *p = slash + 1;
    size_t digits = strspn(p, "0123456789");
    if (inet_pton(AF_INET, ip, &c->addr) != 1 || digits == 0 || digits > 2 || p[digits] != 0)
        nh_usage("%s wants an IPv4 address with a prefix length (A.B.C.D/N), got '%s'", opt, s);
    c->prefix = (unsigned)atoi(p);
    if (c->prefix < 1 || c->prefix > 30)
        nh_usage("%s: the prefix length must be 1 to 30 (a /30 or larger subnet), got '%s'", opt, s);
}

/* Both addresses in the same subnet, distinct, neither its network nor broadcast address. */
static void nh_check_subnet(const struct nh_args *a)
{
    uint32_t mask = a->host.prefix ? ~0u << (32 - a->host.prefix) : 0;
    uint32_t h = ntohl(a->host.addr.s_addr), s = ntohl(a->sandbox.addr.s_addr);
    if (a->host.prefix != a->sandbox.prefix || (h & mask) != (s & mask))
        nh_usage("--host-address %s and --address %s are not in the same subnet", a->host.text, a->sandbox.text);
    if (h == s)
        nh_usage("--host-address and --address are the same address, %s", a->host.text);
    uint32_t addrs[2] = {h, s};
    for (int i = 0; i < 2; i++)
        if ((addrs[i] & ~mask) == 0 || (addrs[i] & ~mask) == ~mask)
            nh_usage("%s is the network or broadcast address of its subnet", i ? a->sandbox.text : a->host.text);
}

static void nh_parse_args(int argc, char **argv, struct nh_args *a)
{
    const char *veth = NULL, *host = NULL, *sandbox = NULL, *ping = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char **slot = strcmp(argv[i], "--veth") == 0           ? &veth
                            : strcmp(argv[i], "--host-address") == 0 ? &host
                            : strcmp(argv[i], "--address") == 0      ? &sandbox
                            : strcmp(argv[i], "--ping-groups") == 0  ? &ping
                                                                     : NULL;
        if (!slot)
            nh_usage("unknown argument '%s'", argv[i]);
        if (i + 1 >= argc)
            nh_usage("%s wants a value", argv[i]);
        if (*slot)
            nh_usage("%s given twice", argv[i]);
        *slot = argv[i + 1];
    }
    if (!veth || !host || !sandbox)
        nh_usage("--veth, --host-address and --address are all required");
    if (!nh_valid_ifname(veth))
        nh_usage("--veth: not a valid interface name (1 to %d bytes, no '/', ':', '%%' or space): '%s'",
                 IFNAMSIZ - 1, veth);
    a->veth = veth;
    nh_parse_cidr("--host-address", host, &a->host);
    nh_parse_cidr("--address", sandbox, &a->sandbox);
    nh_check_subnet(a);
    a->ping_groups = NULL;
    if (ping) {
        static char range[32];
        unsigned low, high;
        int end = 0;
        if (sscanf(ping, "%10u-%10u%n", &low, &high, &end) != 2 || ping[end] || ping[0] < '0' || ping[0] > '9'
            || low > high)
            nh_usage("--ping-groups: want LOW-HIGH, two gids with LOW <= HIGH, not '%s'", ping);
        snprintf(range, sizeof range, "%u %u", low, high);
        a->ping_groups = range;
    }
}

/* Step 1: the container's pid from the state JSON runc writes on stdin. */
static pid_t nh_read_pid(void)
{
    static char state[NH_STATE_MAX + 1];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, state + len, sizeof state - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            nh_fail(errno, "reading the container state from stdin");
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > NH_STATE_MAX)
            nh_fail(0, "reading the container state from stdin: more than %d bytes", NH_STATE_MAX);
    }
    const char *end = state + len;
    for (const char *p = state; (p = memmem(p, (size_t)(end - p), "\"pid\"", 5)); p += 5) {
        const char *q = p + 5;
        while (q < end && strchr(" \t\r\n", *q) && *q)
            q++;
        if (q == end || *q != ':')
            continue;
        for (q++; q < end && strchr(" \t\r\n", *q) && *q; q++)
            ;
        long long pid = 0;
        const char *digits = q;
        for (; q < end && *q >= '0' && *q <= '9' && pid <= INT_MAX; q++)
            pid = pid * 10 + (*q - '0');
        if (q == digits)
            continue;
        if (pid < 1 || pid > INT_MAX || (q < end && *q >= '0' && *q <= '9'))
            nh_fail(0, "the container state on stdin has an impossible pid: %.*s", (int)(q - digits), digits);
        return (pid_t)pid;
    }
    nh_fail(0, "the container state on stdin has no \"pid\" (%zu bytes read)", len);
    return -1;
}

/* Step 1: the container's network namespace, which must not be ours. */
static int nh_open_netns(pid_t pid)
{
    char path[64];
    struct stat target, self;
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        nh_fail(errno, "opening the container's network namespace, %s", path);
    if (fstat(fd, &target) < 0 || stat("/proc/self/ns/net", &self) < 0)
        nh_fail(errno, "comparing %s with the host's network namespace", path);
    if (target.st_dev == self.st_dev && target.st_ino == self.st_ino)
        nh_fail(0, "process %d is in the host's network namespace; runc made none for it", (int)pid);
    return fd;
}

static void nh_write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        nh_fail(errno, "opening %s", path);
    ssize_t len = (ssize_t)strlen(value);
    if (write(fd, value, (size_t)len) != len)
        nh_fail(errno, "writing '%s' to %s", value, path);
    close(fd);
}

static void nh_disable_ipv6(const char *ifname)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    if (access(path, F_OK) < 0 && errno == ENOENT && access("/proc/sys/net/ipv6", F_OK) < 0)
        return; /* a kernel without IPv6: nothing to disable */
    nh_write_sysctl(path, "1");
}

/* Steps 3 and 4: IPv6 off, the address on, the link up. Returns the link's index. */
static unsigned nh_configure_link(int nl, const char *ifname, const struct nh_cidr *c)
{
    int err;
    nh_disable_ipv6(ifname);
    unsigned index = if_nametoindex(ifname);
    if (index == 0)
        nh_fail(errno, "looking up the index of %s", ifname);
    if ((err = nh_add_address(nl, index, c)))
        nh_fail(err, "adding the address %s to %s", c->text, ifname);
    if ((err = nh_set_up(nl, index)))
        nh_fail(err, "setting %s up", ifname);
    return index;
}

/* Steps 2 and 3, in the host's namespace. */
static void nh_host_side(const struct nh_args *a, int netns_fd)
{
    int err;
    nh.host_nl = nh_socket();
    if (nh.host_nl < 0)
        nh_fail(errno, "opening an rtnetlink socket in the host's namespace");
    if ((err = nh_create_veth(nh.host_nl, a->veth, netns_fd))) {
        if (err == EEXIST && !nh.ext_ack[0]) /* the kernel does not say which of the two */
            snprintf(nh.ext_ack, sizeof nh.ext_ack, "%s", if_nametoindex(a->veth)
                     ? "the host already has a link of that name"
                     : "the container's namespace already has an " NH_PEER);
        nh_fail(err, "creating the veth %s with its peer %s in the container's namespace", a->veth, NH_PEER);
    }
    nh.veth = a->veth;
    nh_configure_link(nh.host_nl, a->veth, &a->host);
}

/* Step 4, in the sandbox's namespace. */
static void nh_sandbox_side(const struct nh_args *a, int netns_fd, pid_t pid)
{
    int err;
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        nh_fail(errno, "entering the network namespace of process %d", (int)pid);
    int nl = nh_socket();
    if (nl < 0)
        nh_fail(errno, "opening an rtnetlink socket in the container's namespace");
    unsigned lo = if_nametoindex("lo");
    if (lo == 0)
        nh_fail(errno, "looking up the index of lo in the container's namespace");
    if ((err = nh_set_up(nl, lo)))
        nh_fail(err, "setting lo up in the container's namespace");
    unsigned eth = nh_configure_link(nl, NH_PEER, &a->sandbox);
    if ((err = nh_add_default_route(nl, eth, a->host.addr)))
        nh_fail(err, "adding the default route via %s on %s", inet_ntoa(a->host.addr), NH_PEER);
    close(nl);
    if (a->ping_groups)
        nh_write_sysctl("/proc/sys/net/ipv4/ping_group_range", a->ping_groups);
}

int net_hook_main(int argc, char **argv)
{
    struct nh_args a;
    nh_parse_args(argc, argv, &a);
    pid_t pid = nh_read_pid();
    int netns_fd = nh_open_netns(pid);
    nh_host_side(&a, netns_fd);
    nh_sandbox_side(&a, netns_fd, pid);
    return 0;
}
