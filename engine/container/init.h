/* The container init, in C: what composer-shim does before it waits for a container's first
 * process (see init.c). Shared by shim.c, init.c, spec.c and plumb.c. */
#ifndef COMPOSER_INIT_H
#define COMPOSER_INIT_H

#include <stddef.h>
#include <stdint.h>

#define MAX_ITEMS 4096  /* of each list: arguments, variables, groups, paths */

struct list {
    const char *items[MAX_ITEMS];
    int count;
};

struct mount_spec {
    const char *kind, *source, *target, *options, *propagation;
    int read_only, recursive;
};

struct network_spec {
    const char *bridge, *host_ifname, *ifname, *address, *gateway, *mac, *address6, *gateway6;
    int mtu;
};

struct rlimit_spec {
    const char *name;
    int resource;
    unsigned long long soft, hard;
};

struct id_map {
    long inside, outside, count;
};

/* What a container is made of (engine/container/spec.py, Spec.to_init). */
struct spec {
    const char *id, *rootfs, *cwd, *hostname, *domainname, *join_net;
    int pid;  /* for an exec: the container's first process */
    unsigned uid, gid;
    int read_only, tty, no_new_privileges, has_oom_score_adj, oom_score_adj;
    long long shm_size;
    uint64_t capabilities;
    char *text;  /* what was read: every string above points into it */
    unsigned char *seccomp;
    size_t seccomp_len;
    struct list argv, env, groups, namespaces, masked, readonly, cgroup_files, sysctls;
    struct mount_spec mounts[256];
    int mount_count;
    struct network_spec networks[32];
    int network_count;
    struct rlimit_spec rlimits[32];
    int rlimit_count;
    struct id_map uid_map[16], gid_map[16];
    int uid_map_count, gid_map_count;
};

/* spec.c: read the spec the runtime wrote to `fd`; NULL (and a message in `error`) when it
 * is not one. */
struct spec *read_spec(int fd, char *error, size_t size);
void free_spec(struct spec *spec);
int has_namespace(const struct spec *spec, const char *name);

/* init.c: make the container's namespaces and first process, report to the runtime on
 * `sync_fd`; the first process's pid, or -1 when it could not start. */
int start_container(struct spec *spec, int sync_fd, int go_fd);

/* init.c: run the spec's command in the running container of `spec->pid`; its exit status. */
int exec_in_container(struct spec *spec);

/* plumb.c: connect the network namespace of process `pid` as the spec says; NULL, or what
 * went wrong (a static buffer). */
const char *plumb(const struct spec *spec, int pid);

/* A JSON string of `text` into `out` (quoted). */
void json_string(char *out, size_t size, const char *text);

#endif
