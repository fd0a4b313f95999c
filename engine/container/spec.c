/* Reading a container's spec as the runtime writes it (Spec.to_init in spec.py): pairs of
 * NUL-terminated strings, KEY and VALUE; a list is its key repeated; a mount or a network is
 * its first key ("mount", "network") followed by keys of its fields. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

static int add(struct list *list, const char *value) {
    if (list->count >= MAX_ITEMS - 1) return -1;  /* room for the NULL after argv */
    list->items[list->count++] = value;
    return 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int id_map(struct id_map *maps, int *count, const char *value) {
    if (*count >= 16) return -1;
    struct id_map *m = &maps[(*count)++];
    return sscanf(value, "%ld %ld %ld", &m->inside, &m->outside, &m->count) == 3 ? 0 : -1;
}

static int field(struct spec *s, const char *key, const char *value) {
    struct mount_spec *m = s->mount_count ? &s->mounts[s->mount_count - 1] : NULL;
    struct network_spec *n = s->network_count ? &s->networks[s->network_count - 1] : NULL;
    if (!strcmp(key, "id")) s->id = value;
    else if (!strcmp(key, "rootfs")) s->rootfs = value;
    else if (!strcmp(key, "cwd")) s->cwd = value;
    else if (!strcmp(key, "hostname")) s->hostname = value;
    else if (!strcmp(key, "domainname")) s->domainname = value;
    else if (!strcmp(key, "join_net")) s->join_net = value;
    else if (!strcmp(key, "pid")) s->pid = atoi(value);
    else if (!strcmp(key, "uid")) s->uid = strtoul(value, NULL, 10);
    else if (!strcmp(key, "gid")) s->gid = strtoul(value, NULL, 10);
    else if (!strcmp(key, "read_only")) s->read_only = atoi(value);
    else if (!strcmp(key, "tty")) s->tty = atoi(value);
    else if (!strcmp(key, "no_new_privileges")) s->no_new_privileges = atoi(value);
    else if (!strcmp(key, "oom_score_adj")) {
        s->has_oom_score_adj = 1;
        s->oom_score_adj = atoi(value);
    } else if (!strcmp(key, "shm_size")) s->shm_size = strtoll(value, NULL, 10);
    else if (!strcmp(key, "capabilities")) s->capabilities = strtoull(value, NULL, 10);
    else if (!strcmp(key, "seccomp")) {
        size_t len = strlen(value);
        if (len % 2) return -1;
        s->seccomp_len = len / 2;
        s->seccomp = malloc(s->seccomp_len + 1);
        if (!s->seccomp) return -1;
        for (size_t i = 0; i < s->seccomp_len; i++) {
            int hi = hex_value(value[2 * i]), lo = hex_value(value[2 * i + 1]);
            if (hi < 0 || lo < 0) return -1;
            s->seccomp[i] = (unsigned char)(hi << 4 | lo);
        }
    } else if (!strcmp(key, "argv")) return add(&s->argv, value);
    else if (!strcmp(key, "env")) return add(&s->env, value);
    else if (!strcmp(key, "group")) return add(&s->groups, value);
    else if (!strcmp(key, "namespace")) return add(&s->namespaces, value);
    else if (!strcmp(key, "masked")) return add(&s->masked, value);
    else if (!strcmp(key, "readonly")) return add(&s->readonly, value);
    else if (!strcmp(key, "cgroup_file")) return add(&s->cgroup_files, value);
    else if (!strcmp(key, "sysctl")) return add(&s->sysctls, value);
    else if (!strcmp(key, "uid_map")) return id_map(s->uid_map, &s->uid_map_count, value);
    else if (!strcmp(key, "gid_map")) return id_map(s->gid_map, &s->gid_map_count, value);
    else if (!strcmp(key, "rlimit")) {
        if (s->rlimit_count >= 32) return -1;
        struct rlimit_spec *r = &s->rlimits[s->rlimit_count++];
        char *end;
        r->name = value;  /* "NAME NUMBER SOFT HARD": the name ends at the first space */
        char *space = strchr(value, ' ');
        if (!space) return -1;
        *space = 0;
        r->resource = (int)strtol(space + 1, &end, 10);
        r->soft = strtoull(end, &end, 10);
        r->hard = strtoull(end, &end, 10);
    } else if (!strcmp(key, "mount")) {
        if (s->mount_count >= 256) return -1;
        m = &s->mounts[s->mount_count++];
        *m = (struct mount_spec){.kind = value, .source = "", .target = "", .options = "",
                                 .propagation = "", .recursive = 1};
    } else if (!strncmp(key, "mount_", 6)) {
        if (!m) return -1;
        key += 6;
        if (!strcmp(key, "source")) m->source = value;
        else if (!strcmp(key, "target")) m->target = value;
        else if (!strcmp(key, "options")) m->options = value;
        else if (!strcmp(key, "propagation")) m->propagation = value;
        else if (!strcmp(key, "read_only")) m->read_only = atoi(value);
        else if (!strcmp(key, "recursive")) m->recursive = atoi(value);
        else return -1;
    } else if (!strcmp(key, "network")) {
        if (s->network_count >= 32) return -1;
        n = &s->networks[s->network_count++];
        *n = (struct network_spec){.bridge = value, .ifname = "eth0", .mtu = 1500};
    } else if (!strncmp(key, "network_", 8)) {
        if (!n) return -1;
        key += 8;
        if (!strcmp(key, "host_ifname")) n->host_ifname = value;
        else if (!strcmp(key, "ifname")) n->ifname = value;
        else if (!strcmp(key, "address")) n->address = value;
        else if (!strcmp(key, "gateway")) n->gateway = value;
        else if (!strcmp(key, "mac")) n->mac = value;
        else if (!strcmp(key, "address6")) n->address6 = value;
        else if (!strcmp(key, "gateway6")) n->gateway6 = value;
        else if (!strcmp(key, "mtu")) n->mtu = atoi(value);
        else return -1;
    } else return -1;
    return 0;
}

struct spec *read_spec(int fd, char *error, size_t size) {
    size_t length = 0, capacity = 65536;
    char *buffer = malloc(capacity);
    for (;;) {
        if (!buffer) {
            snprintf(error, size, "out of memory");
            return NULL;
        }
        ssize_t n = read(fd, buffer + length, capacity - length - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(error, size, "reading the spec: %s", strerror(errno));
            return NULL;
        }
        if (n == 0) break;
        length += (size_t)n;
        if (length + 1 >= capacity) buffer = realloc(buffer, capacity *= 2);
    }
    buffer[length] = 0;
    struct spec *spec = calloc(1, sizeof *spec);
    if (!spec) {
        snprintf(error, size, "out of memory");
        return NULL;
    }
    spec->text = buffer;
    spec->id = spec->rootfs = spec->hostname = spec->domainname = spec->join_net = "";
    spec->cwd = "/";
    char *at = buffer, *end = buffer + length;
    while (at < end) {
        char *key = at;
        char *value = key + strlen(key) + 1;
        if (value >= end) break;
        at = value + strlen(value) + 1;
        if (field(spec, key, value) != 0) {
            snprintf(error, size, "the spec's %s is not one the init takes (or there are more "
                     "than it takes: %d of a list, 256 mounts, 32 networks)", key, MAX_ITEMS - 1);
            free_spec(spec);
            return NULL;
        }
    }
    if (!spec->argv.count || !*spec->rootfs) {
        snprintf(error, size, "the spec has no command or no root filesystem");
        free_spec(spec);
        return NULL;
    }
    return spec;
}

void free_spec(struct spec *spec) {
    free(spec->seccomp);
    free(spec->text);
    free(spec);
}

int has_namespace(const struct spec *spec, const char *name) {
    for (int i = 0; i < spec->namespaces.count; i++)
        if (!strcmp(spec->namespaces.items[i], name)) return 1;
    return 0;
}

void json_string(char *out, size_t size, const char *text) {
    size_t at = 0;
    if (size < 3) return;
    out[at++] = '"';
    for (const unsigned char *c = (const unsigned char *)text; *c && at + 8 < size; c++) {
        if (*c == '"' || *c == '\\' || *c < 0x20)
            at += (size_t)snprintf(out + at, size - at, "\\u%04x", *c);
        else
            out[at++] = (char)*c;
    }
    out[at++] = '"';
    out[at] = 0;
}
