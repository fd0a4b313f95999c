/* The container init: run by composer-shim (still in the host's namespaces) before it waits
 * for the container's first process.
 *
 * It unshares the PID namespace and forks the first process (PID 1 of the new namespace),
 * which makes the other namespaces, enters the container's cgroup, builds the mount tree
 * inside the overlay root, pivots into it, hardens it and waits for the runtime's word; then
 * drops privileges and executes the service. Meanwhile the shim plumbs the first process's
 * network namespace (plumb.c). Messages to the runtime are JSON lines on SYNC_FD: {"pid": N}
 * once the first process exists and its network is plumbed (its pid on the host), then
 * {"started": true} when it has executed the service, or {"error": "...", "op": "..."}.
 * Nothing here executes a program of the container before privileges are dropped, and every
 * path inside the container is resolved under its root (openat2 RESOLVE_IN_ROOT), so a symlink
 * in the image cannot send a mount or a write to the host.
 *
 * With a user namespace the first process is a grandchild: the child makes the user namespace
 * first (so it owns every other namespace), the shim writes its id maps, and the child makes
 * the others, forks the first process and ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* A setup step that failed: "OP: DETAIL", reported by the first process to the runtime, or
 * by an exec on its standard error (exit status 126). */
static int error_fd = -1, in_exec = 0;

static void report(const char *op, const char *detail) {
    char line[8192], quoted_error[4096], quoted_op[2048], text[4096];
    snprintf(text, sizeof text, "%s: %s", op, detail);
    if (in_exec) {
        dprintf(2, "composer exec: %s\n", text);
        _exit(126);
    }
    json_string(quoted_error, sizeof quoted_error, text);
    json_string(quoted_op, sizeof quoted_op, op);
    int len = snprintf(line, sizeof line, "{\"error\":%s,\"op\":%s}", quoted_error, quoted_op);
    if (error_fd >= 0 && write(error_fd, line, (size_t)len) < 0) _exit(127);
}

static void __attribute__((noreturn)) fail(const char *op, const char *detail) {
    report(op, detail);
    _exit(127);
}

/* Check the result of a step: on failure report OP (printf-style) with errno's message. */
static long step(long result, const char *format, ...) {
    if (result >= 0) return result;
    int saved = errno;
    char op[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(op, sizeof op, format, args);
    va_end(args);
    fail(op, strerror(saved));
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t len = (ssize_t)strlen(text), n = write(fd, text, (size_t)len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == len ? 0 : -1;
}

/* -- paths inside the new root ------------------------------------------------------------ */

static int openat2_in(int root, const char *path, int flags) {
    struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    long fd;
    do fd = syscall(SYS_openat2, root, path, &how, sizeof how);
    while (fd < 0 && errno == EINTR);
    return (int)fd;
}

/* An O_PATH handle on `path` under `root`, symlinks resolved inside it; `create` "dir" or
 * "file" makes what is missing (parents as directories; a dangling symlink's target, as
 * Docker's securejoin does, inside the root). -1 with errno on failure. */
static int resolve(int root, const char *path, int directory, const char *create, int depth) {
    while (*path == '/') path++;
    char rel[PATH_MAX];
    snprintf(rel, sizeof rel, "%s", path);
    size_t len = strlen(rel);
    while (len && rel[len - 1] == '/') rel[--len] = 0;
    if (!len) return fcntl(root, F_DUPFD_CLOEXEC, 0);
    int flags = O_PATH | (directory ? O_DIRECTORY : 0);
    int fd = openat2_in(root, rel, flags);
    if (fd >= 0 || errno != ENOENT || !create) return fd;
    if (depth > 40) {
        errno = ELOOP;
        return -1;
    }
    char head[PATH_MAX];
    const char *name = rel;
    char *slash = strrchr(rel, '/');
    if (slash) {
        snprintf(head, sizeof head, "%.*s", (int)(slash - rel), rel);
        name = slash + 1;
    } else {
        head[0] = 0;
    }
    int parent = resolve(root, head, 1, "dir", depth + 1);
    if (parent < 0) return -1;
    int made;
    if (!strcmp(create, "dir")) {
        made = mkdirat(parent, name, 0755);
    } else {
        made = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (made >= 0) made = close(made);
    }
    if (made < 0 && errno == EEXIST) {  /* only a dangling symlink gets here */
        char link[PATH_MAX], target[2 * PATH_MAX + 2];
        ssize_t n = readlinkat(parent, name, link, sizeof link - 1);
        int saved = errno;
        close(parent);
        if (n < 0) {
            errno = saved;
            return -1;
        }
        link[n] = 0;
        if (link[0] == '/') snprintf(target, sizeof target, "%s", link);
        else snprintf(target, sizeof target, "%s/%s", head, link);
        return resolve(root, target, directory, create, depth + 1);
    }
    int saved = errno;
    close(parent);
    if (made < 0) {
        errno = saved;
        return -1;
    }
    return openat2_in(root, rel, flags);
}

static void proc_path(char *out, size_t size, int fd) {
    snprintf(out, size, "/proc/self/fd/%d", fd);
}

static void mount_at(int root, const char *target, const char *source, const char *fstype,
                     unsigned long flags, const char *data, int directory) {
    char op[PATH_MAX + 64], where[64];
    snprintf(op, sizeof op, "mount %s on %s", fstype ? fstype : "bind", target);
    int fd = resolve(root, target, directory, directory ? "dir" : "file", 0);
    if (fd < 0) fail(op, strerror(errno));
    proc_path(where, sizeof where, fd);
    step(mount(source, where, fstype, flags, data), "%s", op);
    close(fd);
}

static int remount_read_only(const char *path, unsigned long flags) {
    return mount("", path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | flags, NULL);
}

/* -- the container's first process -------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned major, minor;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
               {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

static unsigned long propagation(const char *name) {
    if (!strcmp(name, "private")) return MS_PRIVATE;
    if (!strcmp(name, "rprivate")) return MS_PRIVATE | MS_REC;
    if (!strcmp(name, "shared")) return MS_SHARED;
    if (!strcmp(name, "rshared")) return MS_SHARED | MS_REC;
    if (!strcmp(name, "slave")) return MS_SLAVE;
    if (!strcmp(name, "rslave")) return MS_SLAVE | MS_REC;
    return 0;
}

static void user_mount(int root, const struct mount_spec *m) {
    if (!strcmp(m->kind, "tmpfs")) {
        mount_at(root, m->target, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, m->options, 1);
        return;
    }
    if (!strcmp(m->kind, "mqueue")) {
        mount_at(root, m->target, "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", 1);
        return;
    }
    char op[2 * PATH_MAX + 16], where[64];
    snprintf(op, sizeof op, "bind %s on %s", m->source, m->target);
    struct stat st;
    int is_dir;
    if (!strncmp(m->source, "fd:", 3)) {  /* a detached copy the runtime took: attach it */
        int tree = atoi(m->source + 3);
        step(fstat(tree, &st), "%s", op);
        is_dir = S_ISDIR(st.st_mode);
        int fd = resolve(root, m->target, is_dir, is_dir ? "dir" : "file", 0);
        if (fd < 0) fail(op, strerror(errno));
        step(syscall(SYS_move_mount, tree, "", fd, "",
                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "%s", op);
        close(fd);
        close(tree);
    } else {
        step(stat(m->source, &st), "%s", op);
        is_dir = S_ISDIR(st.st_mode);
        mount_at(root, m->target, m->source, NULL, MS_BIND | (m->recursive ? MS_REC : 0), "",
                 is_dir);
    }
    int fd = resolve(root, m->target, is_dir, NULL, 0);
    if (fd < 0) fail(op, strerror(errno));
    proc_path(where, sizeof where, fd);
    if (*m->propagation)
        step(mount("", where, NULL, propagation(m->propagation), NULL), "propagation of %s",
             m->target);
    /* Device nodes in a volume are inert (nodev): the container's /dev holds its devices. */
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NODEV | (m->read_only ? MS_RDONLY : 0);
    step(mount("", where, NULL, flags, NULL), "options of %s", m->target);
    close(fd);
}

static void mounts(const struct spec *spec, int root) {
    int own_net = has_namespace(spec, "net") && !*spec->join_net;
    int user = has_namespace(spec, "user");
    char data[128], where[PATH_MAX];
    mount_at(root, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", 1);
    mount_at(root, "/dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k", 1);
    int dev = resolve(root, "/dev", 1, NULL, 0);
    if (dev < 0) fail("mount tmpfs on /dev", strerror(errno));
    for (size_t i = 0; i < sizeof devices / sizeof *devices; i++) {
        const char *name = devices[i].name;
        if (user) {  /* no mknod in a user namespace: bind the host's */
            int fd = openat(dev, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
            if (fd >= 0) close(fd);
            char host[64];
            snprintf(host, sizeof host, "/dev/%s", name);
            snprintf(where, sizeof where, "/proc/self/fd/%d/%s", dev, name);
            step(mount(host, where, NULL, MS_BIND, NULL), "bind /dev/%s", name);
            continue;
        }
        step(mknodat(dev, name, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)),
             "mknod /dev/%s", name);
        fchmodat(dev, name, 0666, 0);
    }
    static const char *links[][2] = {{"fd", "/proc/self/fd"},
                                      {"stdin", "/proc/self/fd/0"},
                                      {"stdout", "/proc/self/fd/1"},
                                      {"stderr", "/proc/self/fd/2"},
                                      {"ptmx", "pts/ptmx"}};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        step(symlinkat(links[i][1], dev, links[i][0]), "symlink /dev/%s", links[i][0]);
    step(mkdirat(dev, "pts", 0755), "mkdir /dev/pts");
    step(mkdirat(dev, "shm", 01777), "mkdir /dev/shm");
    step(mkdirat(dev, "mqueue", 0755), "mkdir /dev/mqueue");
    close(dev);
    mount_at(root, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5", 1);
    snprintf(data, sizeof data, "mode=1777,size=%lld", spec->shm_size);
    mount_at(root, "/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data, 1);
    mount_at(root, "/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, "", 1);
    if (own_net)
        mount_at(root, "/sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                 "", 1);
    else  /* a sysfs of another network namespace cannot be mounted: bind the host's */
        mount_at(root, "/sys", "/sys", NULL, MS_BIND | MS_REC, "", 1);
    for (int i = 0; i < spec->mount_count; i++) user_mount(root, &spec->mounts[i]);
}

static void pivot(int root) {
    step(fchdir(root), "pivot_root");
    close(root);
    step(syscall(SYS_pivot_root, ".", "."), "pivot_root");
    step(umount2(".", MNT_DETACH), "detach the old root");
    step(chdir("/"), "pivot_root");
}

static void harden(const struct spec *spec) {
    for (int i = 0; i < spec->sysctls.count; i++) {
        char key[512], path[600];
        snprintf(key, sizeof key, "%s", spec->sysctls.items[i]);
        char *value = strchr(key, '=');
        if (!value) continue;
        *value++ = 0;
        snprintf(path, sizeof path, "/proc/sys/%s", key);
        for (char *c = path + 10; *c; c++)
            if (*c == '.') *c = '/';
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t len = (ssize_t)strlen(value);
        if (fd < 0 || write(fd, value, (size_t)len) != len) step(-1, "sysctl %s", key);
        close(fd);
    }
    for (int i = 0; i < spec->masked.count; i++) {
        const char *path = spec->masked.items[i];
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            step(mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0"), "mask %s", path);
        else
            step(mount("/dev/null", path, NULL, MS_BIND, NULL), "mask %s", path);
    }
    for (int i = 0; i < spec->readonly.count; i++) {
        const char *path = spec->readonly.items[i];
        if (access(path, F_OK) != 0) continue;
        step(mount(path, path, NULL, MS_BIND | MS_REC, NULL), "read-only %s", path);
        step(remount_read_only(path, MS_REC | MS_NOSUID | MS_NODEV), "read-only %s", path);
    }
    if (spec->read_only) step(remount_read_only("/", MS_NODEV), "read-only root");
    /* /dev is complete: read-only from now on, so no device node can be made where it works
     * (every other writable place is nodev). Its pts, shm and mqueue mounts stay writable. */
    step(remount_read_only("/dev", MS_NOSUID), "read-only /dev");
}

static void set_rlimits(const struct spec *spec) {
    for (int i = 0; i < spec->rlimit_count; i++) {
        const struct rlimit_spec *r = &spec->rlimits[i];
        struct rlimit limit = {.rlim_cur = r->soft, .rlim_max = r->hard};
        step(setrlimit(r->resource, &limit), "ulimit %s", r->name);
    }
}

/* "/" + path, with "." and ".." and repeated slashes resolved (os.path.normpath). */
static void normalise(char *out, size_t size, const char *path) {
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    size_t at = 0;
    out[0] = 0;
    for (char *part = strtok(copy, "/"); part; part = strtok(NULL, "/")) {
        if (!strcmp(part, ".")) continue;
        if (!strcmp(part, "..")) {
            while (at > 0 && out[at - 1] != '/') at--;
            if (at > 0) at--;
            out[at] = 0;
            continue;
        }
        at += (size_t)snprintf(out + at, size - at, "/%s", part);
        if (at >= size) at = size - 1;
    }
    if (!at) snprintf(out, size, "/");
}

static void workdir(const char *cwd) {
    char path[PATH_MAX], expected[PATH_MAX], actual[PATH_MAX];
    normalise(expected, sizeof expected, cwd);
    snprintf(path, sizeof path, "%s", expected);
    for (char *slash = strchr(path + 1, '/');; slash = strchr(slash + 1, '/')) {
        if (slash) *slash = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) step(-1, "working directory %s", cwd);
        if (!slash) break;
        *slash = '/';
    }
    step(chdir(path), "working directory %s", cwd);
    /* After pivot_root the old root is gone, so this holds by construction; check it anyway. */
    if (!getcwd(actual, sizeof actual) || strcmp(actual, expected) != 0) {
        char op[PATH_MAX + 32];
        snprintf(op, sizeof op, "working directory %s", cwd);
        fail(op, "resolves outside the container");
    }
}

static void install_seccomp(const struct spec *spec) {
    struct sock_fprog program = {.len = (unsigned short)(spec->seccomp_len / 8),
                                 .filter = (struct sock_filter *)spec->seccomp};
    if (spec->seccomp_len % 8 || !program.len || spec->seccomp_len / 8 > BPF_MAXINSNS) {
        errno = EINVAL;
        step(-1, "seccomp");
    }
    step(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program), "seccomp");
}

static void privileges(const struct spec *spec) {
    uint64_t keep = spec->capabilities;
    int last = CAP_LAST_CAP;
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    if (f) {
        if (fscanf(f, "%d", &last) != 1) last = CAP_LAST_CAP;
        fclose(f);
    }
    for (int number = 0; number <= last; number++)
        if (!(keep & (1ULL << number)))
            step(prctl(PR_CAPBSET_DROP, number, 0, 0, 0), "drop capabilities");
    step(prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities");
    gid_t groups[MAX_ITEMS];
    for (int i = 0; i < spec->groups.count; i++)
        groups[i] = (gid_t)strtoul(spec->groups.items[i], NULL, 10);
    step(setgroups((size_t)spec->groups.count, groups), "set groups");
    step(setresgid(spec->gid, spec->gid, spec->gid), "set gid %u", spec->gid);
    step(setresuid(spec->uid, spec->uid, spec->uid), "set uid %u", spec->uid);
    /* No inheritable capabilities, as Docker since 20.10 (CVE-2022-24769). */
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {
        {.effective = (uint32_t)keep, .permitted = (uint32_t)keep},
        {.effective = (uint32_t)(keep >> 32), .permitted = (uint32_t)(keep >> 32)}};
    step(syscall(SYS_capset, &header, data), "set capabilities");
    step(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities");
    if (spec->no_new_privileges) step(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
}

/* execvpe with the container's PATH (execvpe(3) would look at ours). */
static void exec_service(const struct spec *spec, char **env) {
    char **argv = (char **)spec->argv.items;
    const char *name = argv[0];
    if (strchr(name, '/')) {
        execve(name, argv, env);
        return;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (char **e = env; *e; e++)
        if (!strncmp(*e, "PATH=", 5)) path = *e + 5;
    int error = ENOENT;
    char directories[8192], candidate[8192 + PATH_MAX + 2];
    snprintf(directories, sizeof directories, "%s", path);
    for (char *start = directories;; ) {
        char *colon = strchr(start, ':');
        if (colon) *colon = 0;
        snprintf(candidate, sizeof candidate, "%s/%s", *start ? start : ".", name);
        execve(candidate, argv, env);
        if (errno == EACCES) error = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR) return;
        if (!colon) break;
        start = colon + 1;
    }
    errno = error;
}

/* The last steps, in the container: working directory, user and capabilities, seccomp, then
 * execute the service. Returns only when the exec failed (errno). */
static void become(const struct spec *spec) {
    workdir(spec->cwd);
    if (spec->seccomp_len && !spec->no_new_privileges)
        /* Without no_new_privs only CAP_SYS_ADMIN may install a filter: do it before the
         * capabilities go (as runc does); the filter allows what the rest of setup calls. */
        install_seccomp(spec);
    privileges(spec);
    char *env[MAX_ITEMS + 1];
    for (int i = 0; i < spec->env.count; i++) env[i] = (char *)spec->env.items[i];
    env[spec->env.count] = NULL;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);  /* nothing of the host's */
    if (spec->seccomp_len && spec->no_new_privileges) install_seccomp(spec);
    ((struct spec *)spec)->argv.items[spec->argv.count] = NULL;
    exec_service(spec, env);
}

static void first_process(const struct spec *spec, int go_fd) {
    setsid();
    if (spec->tty) step(ioctl(0, TIOCSCTTY, 0), "controlling terminal");
    step(mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL), "make mounts private");
    /* An O_PATH handle on the root filesystem. In a user namespace its path may not be
     * searchable: the working directory was set to it before. */
    int place = open(has_namespace(spec, "user") ? "." : spec->rootfs,
                     O_PATH | O_DIRECTORY | O_CLOEXEC);
    step(place, "bind the root");
    /* A copy of the root's mount tree over it, ours to change: made and used through handles,
     * as the path may not be searchable by a user namespace's root. */
    int root = (int)step(syscall(SYS_open_tree, place, "",
                                 OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH | O_CLOEXEC),
                         "bind the root");
    step(syscall(SYS_move_mount, root, "", place, "",
                 MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "bind the root");
    close(place);
    mounts(spec, root);
    pivot(root);
    harden(spec);
    if (has_namespace(spec, "uts")) {
        if (*spec->hostname)
            step(sethostname(spec->hostname, strlen(spec->hostname)), "sethostname");
        if (*spec->domainname)
            step(setdomainname(spec->domainname, strlen(spec->domainname)), "setdomainname");
    }
    if (spec->has_oom_score_adj) {  /* before the capabilities go: lowering needs one */
        char value[32];
        snprintf(value, sizeof value, "%d", spec->oom_score_adj);
        step(write_file("/proc/self/oom_score_adj", value), "oom_score_adj %d",
             spec->oom_score_adj);
    }
    set_rlimits(spec);
    char go = 0;
    if (read(go_fd, &go, 1) != 1 || go != 'g')
        fail("start", "the runtime went away before the start");
    become(spec);
    step(-1, "exec %s", spec->argv.items[0]);
}

/* -- namespaces --------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int flag;
} namespace_flags[] = {{"mnt", CLONE_NEWNS}, {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
                       {"net", CLONE_NEWNET}, {"pid", CLONE_NEWPID}, {"user", CLONE_NEWUSER},
                       {"cgroup", CLONE_NEWCGROUP}};

static void join_net(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    step(fd, "join the network namespace");
    step(setns(fd, CLONE_NEWNET), "join the network namespace");
    close(fd);
}

/* Join or make the first process's namespaces (not the cgroup one: later). */
static void namespaces(const struct spec *spec) {
    int user = has_namespace(spec, "user"), flags = 0;
    for (size_t i = 0; i < sizeof namespace_flags / sizeof *namespace_flags; i++) {
        const char *name = namespace_flags[i].name;
        if (!has_namespace(spec, name) || !strcmp(name, "cgroup") || !strcmp(name, "user"))
            continue;
        if (!strcmp(name, "pid") && !user) continue;  /* made by the parent */
        if (!strcmp(name, "net") && *spec->join_net) continue;
        flags |= namespace_flags[i].flag;
    }
    if (*spec->join_net && !user) join_net(spec->join_net);
    step(unshare(flags), "unshare");
}

static void enter_cgroup(const struct spec *spec) {
    if (!has_namespace(spec, "user"))  /* else joined before the user namespace was made */
        for (int i = 0; i < spec->cgroup_files.count; i++)
            step(write_file(spec->cgroup_files.items[i], "0"), "enter the cgroup");
    if (has_namespace(spec, "cgroup"))
        step(unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace");
}

/* For a container with a user namespace, in the child: make the user namespace first; the
 * shim, our parent, writes its id maps; then make the other namespaces and fork the first
 * process, report its pid and end. Returns in the first process. */
static void user_namespace(const struct spec *spec, int ready_w, int maps_r) {
    step(chdir(spec->rootfs), "enter the root filesystem");
    for (int i = 0; i < spec->cgroup_files.count; i++)  /* host files: while privileged */
        step(write_file(spec->cgroup_files.items[i], "0"), "enter the cgroup");
    set_rlimits(spec);  /* raising a hard limit needs the host's CAP_SYS_RESOURCE */
    if (*spec->join_net) join_net(spec->join_net);
    step(unshare(CLONE_NEWUSER), "unshare the user namespace");
    char m = 0;
    if (write(ready_w, "u", 1) != 1 || read(maps_r, &m, 1) != 1 || m != 'm')
        fail("user namespace", "the runtime went away");
    close(maps_r);
    step(setresgid(0, 0, 0), "become the container's root");
    step(setresuid(0, 0, 0), "become the container's root");
    namespaces(spec);
    pid_t first = (pid_t)step(fork(), "fork the first process");
    if (first) {
        char message[32];
        int len = snprintf(message, sizeof message, "p%d", first);
        if (write(ready_w, message, (size_t)len) != len) _exit(127);
        _exit(0);
    }
}

static void write_maps(pid_t pid, const struct spec *spec) {
    const struct id_map *maps[2] = {spec->uid_map, spec->gid_map};
    int counts[2] = {spec->uid_map_count, spec->gid_map_count};
    const char *names[2] = {"uid_map", "gid_map"};
    for (int k = 0; k < 2; k++) {
        char text[1024] = "", path[64];
        size_t at = 0;
        for (int i = 0; i < counts[k]; i++)
            at += (size_t)snprintf(text + at, sizeof text - at, "%ld %ld %ld\n",
                                   maps[k][i].inside, maps[k][i].outside, maps[k][i].count);
        snprintf(path, sizeof path, "/proc/%d/%s", pid, names[k]);
        if (write_file(path, text) != 0) return;  /* the child sees them missing */
    }
}

static void send_line(int fd, const char *line) {
    size_t len = strlen(line);
    if (write(fd, line, len) != (ssize_t)len) return;
    if (write(fd, "\n", 1) != 1) return;
}

int start_container(struct spec *spec, int sync_fd, int go_fd) {
    int user = has_namespace(spec, "user");
    char line[8192];
    if (has_namespace(spec, "pid") && !user && unshare(CLONE_NEWPID) != 0) {
        char error[512], quoted[600];
        snprintf(error, sizeof error, "unshare the pid namespace: %s", strerror(errno));
        json_string(quoted, sizeof quoted, error);
        snprintf(line, sizeof line, "{\"error\":%s,\"op\":\"unshare the pid namespace\"}",
                 quoted);
        send_line(sync_fd, line);
        return -1;
    }
    int errors[2], ready[2], maps[2];
    if (pipe2(errors, O_CLOEXEC) || pipe2(ready, O_CLOEXEC) || pipe2(maps, O_CLOEXEC)) {
        send_line(sync_fd, "{\"error\":\"start: no pipes\",\"op\":\"start\"}");
        return -1;
    }
    pid_t child = fork();
    if (child < 0) {
        send_line(sync_fd, "{\"error\":\"start: cannot fork\",\"op\":\"start\"}");
        return -1;
    }
    if (child == 0) {
        close(errors[0]);
        close(ready[0]);
        close(maps[1]);
        close(sync_fd);
        error_fd = errors[1];
        signal(SIGHUP, SIG_DFL);
        if (user) user_namespace(spec, ready[1], maps[0]);  /* returns in the first process */
        else namespaces(spec);
        close(ready[1]);  /* the namespaces exist: the shim may plumb them */
        enter_cgroup(spec);
        first_process(spec, go_fd);
        _exit(127);
    }
    close(errors[1]);
    close(ready[1]);
    close(maps[0]);
    pid_t first = child;
    /* End of file: the namespaces exist, or the first process failed. With a user namespace,
     * "u" asks for its id maps first, and "p<pid>" names the first process (a grandchild). */
    char message[64];
    ssize_t n;
    while ((n = read(ready[0], message, sizeof message - 1)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        message[n] = 0;
        char *at = message;
        if (*at == 'u') {
            write_maps(child, spec);
            if (write(maps[1], "m", 1) != 1) break;
            at++;
        }
        if (*at == 'p') first = atoi(at + 1);
    }
    close(ready[0]);
    close(maps[1]);
    close(go_fd);
    if (first != child) waitpid(child, NULL, 0);  /* the intermediate process, which ended */
    const char *failure = plumb(spec, first);
    if (failure) kill(first, SIGKILL);  /* it waits for the word to go: its error comes first */
    else {
        snprintf(line, sizeof line, "{\"pid\":%d}", first);
        send_line(sync_fd, line);
    }
    size_t length = 0;
    while (length < sizeof line - 1) {
        n = read(errors[0], line + length, sizeof line - 1 - length);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        length += (size_t)n;
    }
    line[length] = 0;
    close(errors[0]);
    if (failure && !length) {
        char quoted[4096];
        json_string(quoted, sizeof quoted, failure);
        snprintf(line, sizeof line, "{\"error\":%s,\"op\":\"network\"}", quoted);
        length = strlen(line);
    }
    send_line(sync_fd, length ? line : "{\"started\":true}");
    close(sync_fd);
    return length ? -1 : first;
}

/* -- a process in a running container (exec) --------------------------------------------- */

static pid_t exec_child;

static void relay(int sig) {
    if (exec_child > 0) kill(exec_child, sig);
}

/* The user namespace first: it owns the others; mnt last: it changes the root. */
static const char *join_order[] = {"user", "ipc", "uts", "net", "pid", "cgroup", "mnt"};

int exec_in_container(struct spec *spec) {
    in_exec = 1;
    int handles[7], count = 0, flags[7];
    char path[64], pid[32];
    for (size_t i = 0; i < sizeof join_order / sizeof *join_order; i++) {
        if (!has_namespace(spec, join_order[i])) continue;
        snprintf(path, sizeof path, "/proc/%d/ns/%s", spec->pid, join_order[i]);
        handles[count] = (int)step(open(path, O_RDONLY | O_CLOEXEC), "%s", path);
        for (size_t k = 0; k < sizeof namespace_flags / sizeof *namespace_flags; k++)
            if (!strcmp(namespace_flags[k].name, join_order[i])) flags[count] = namespace_flags[k].flag;
        count++;
    }
    snprintf(pid, sizeof pid, "%d", getpid());
    for (int i = 0; i < spec->cgroup_files.count; i++)
        step(write_file(spec->cgroup_files.items[i], pid), "%s", spec->cgroup_files.items[i]);
    for (int i = 0, at = 0; i < (int)(sizeof join_order / sizeof *join_order); i++) {
        if (!has_namespace(spec, join_order[i])) continue;
        step(setns(handles[at], flags[at]), "join the %s namespace", join_order[i]);
        close(handles[at++]);
    }
    exec_child = fork();
    if (exec_child < 0) step(-1, "fork");
    if (exec_child == 0) {
        if (spec->tty) {  /* stdin is a terminal: make it the process's controlling one */
            setsid();
            step(ioctl(0, TIOCSCTTY, 0), "controlling terminal");
        }
        become(spec);
        int code = errno == ENOENT ? 127 : 126;
        dprintf(2, "composer exec: %s: %s\n", spec->argv.items[0], strerror(errno));
        _exit(code);
    }
    int relayed[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof relayed / sizeof *relayed; i++) signal(relayed[i], relay);
    int status;
    while (waitpid(exec_child, &status, 0) < 0)
        if (errno != EINTR) return 126;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
