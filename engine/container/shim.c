/* composer-shim: makes one container and stays as the parent of its first process, so that
 * its exit status is recorded even when no composer process is running (a supervisor killed
 * with -9 cannot wait for processes it did not fork, and nothing else could).  About 100 KB
 * of memory once the container runs, where containerd-shim takes 13 MB and conmon 2 MB.
 *
 * usage: composer-shim EXIT_FILE OOM_FILE TTY_FD OUT_FD HOLD_FD --init SPEC_FD SYNC_FD GO_FD
 *    or: composer-shim --exec SPEC_FD
 * The first form becomes a child subreaper, reads the container's spec from SPEC_FD, makes
 * its namespaces and first process, steered by the runtime through SYNC_FD and GO_FD
 * (init.c), and waits: when the first process ends the shim writes
 * "EXIT_CODE SIGNAL OOM_KILLS UNIX_TIME\n" to EXIT_FILE (through a temp file and a rename),
 * then reaps it and exits: until the record is there, the ended process is a zombie whose pid
 * and start time still say "running", never "ended, code unknown".  OOM_FILE is the cgroup's
 * memory.events (v2) or memory.oom_control (v1), read for its oom_kill count; "-" for none.
 * TTY_FD: the master of the container's terminal (or -1): the shim holds it for the
 * container's life and copies what the container writes to OUT_FD (its raw output file).
 * HOLD_FD: the write end of the container's stdin pipe (or -1), held so that stdin stays
 * open (stdin_open) however long no one writes.
 * The second form runs a process in a running container (`composer exec`): the spec names
 * the container's first process, whose namespaces and cgroup it joins; its exit status is the
 * process's. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

static long oom_kills(const char *path) {
    char buf[4096];
    long count = 0;
    if (strcmp(path, "-") == 0) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *at = strstr(buf, "oom_kill ");
    if (at) count = strtol(at + 9, NULL, 10);
    return count;
}

/* Child `which` if it ended, left unreaped; 0 when it has not yet and `nohang`, -1 when
 * there is no such child. */
static pid_t ended(pid_t which, int nohang, siginfo_t *info) {
    memset(info, 0, sizeof *info);
    int flags = WEXITED | WNOWAIT | (nohang ? WNOHANG : 0);
    if (waitid(P_PID, (id_t)which, info, flags) < 0) return -1;
    return info->si_pid;
}

static void record(const char *path, const siginfo_t *info, const char *oom_path) {
    char tmp[4096], line[128];
    int exited = info->si_code == CLD_EXITED;
    int code = exited ? info->si_status : 128 + info->si_status;
    int sig = exited ? 0 : info->si_status;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int len = snprintf(line, sizeof line, "%d %d %ld %ld\n", code, sig, oom_kills(oom_path),
                       (long)time(NULL));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (write(fd, line, len) == len && fsync(fd) == 0) rename(tmp, path);
    close(fd);
}

static void drain(int tty, int out, char *buf, size_t size) {
    if (tty < 0) return;
    fcntl(tty, F_SETFL, fcntl(tty, F_GETFL) | O_NONBLOCK);
    ssize_t n;
    while ((n = read(tty, buf, size)) > 0)
        if (out >= 0 && write(out, buf, n) != n) break;
}

/* Nothing of ours stays open but what we hold for the container: not the runtime's pipes (so
 * it sees them close), not our stdio (the container's output goes to its log, not through us). */
static void release(int tty, int out, int hold) {
    int kept[3] = {tty, out, hold}, from = 3;
    for (int i = 0; i < 3; i++)  /* in order: close what lies between them */
        for (int k = i + 1; k < 3; k++)
            if (kept[k] < kept[i]) {
                int t = kept[i];
                kept[i] = kept[k];
                kept[k] = t;
            }
    for (int i = 0; i < 3; i++) {
        if (kept[i] < from) continue;
        if (kept[i] > from) syscall(SYS_close_range, from, kept[i] - 1, 0);
        from = kept[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2) close(devnull);
    }
}

static void copy_terminal(int tty, int out, char *buf, size_t size, int timeout) {
    struct pollfd p = {.fd = tty, .events = POLLIN};
    if (poll(&p, 1, timeout) > 0 && (p.revents & POLLIN)) {
        ssize_t n = read(tty, buf, size);
        ssize_t done = 0;
        while (n > 0 && out >= 0 && done < n) {
            ssize_t w = write(out, buf + done, n - done);
            if (w <= 0) break;
            done += w;
        }
    } else if (p.revents & (POLLHUP | POLLERR)) {
        usleep(10000);  /* no one holds the terminal now: only wait */
    }
}

static int wait_for(pid_t first, char **argv, int tty, int out, int hold) {
    static char buf[65536];
    release(tty, out, hold);  /* hold: kept open, never written */
    for (;;) {
        siginfo_t info;
        if (tty >= 0) copy_terminal(tty, out, buf, sizeof buf, 100);
        pid_t pid = ended(first, tty >= 0, &info);
        if (pid == 0) continue;
        if (pid < 0) {
            if (errno == EINTR) continue;
            return 125;
        }
        drain(tty, out, buf, sizeof buf);
        record(argv[1], &info, argv[2]);
        waitpid(pid, NULL, 0);
        return 0;
    }
}

int main(int argc, char **argv) {
    char error[512];
    if (argc == 3 && strcmp(argv[1], "--exec") == 0) {
        struct spec *spec = read_spec(atoi(argv[2]), error, sizeof error);
        if (!spec) {
            fprintf(stderr, "composer exec: %s\n", error);
            return 126;
        }
        close(atoi(argv[2]));
        return exec_in_container(spec);
    }
    if (argc != 10 || strcmp(argv[6], "--init") != 0) {
        fprintf(stderr, "usage: composer-shim EXIT_FILE OOM_FILE TTY_FD OUT_FD HOLD_FD "
                        "--init SPEC_FD SYNC_FD GO_FD\n"
                        "   or: composer-shim --exec SPEC_FD\n");
        return 2;
    }
    int tty = atoi(argv[3]), out = atoi(argv[4]), hold = atoi(argv[5]);
    int spec_fd = atoi(argv[7]), sync_fd = atoi(argv[8]), go_fd = atoi(argv[9]);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return 125;
    signal(SIGHUP, SIG_IGN);  /* outlive the session of whoever started us */
    struct spec *spec = read_spec(spec_fd, error, sizeof error);
    close(spec_fd);
    if (!spec) {
        char line[700], quoted[600];
        json_string(quoted, sizeof quoted, error);
        int len = snprintf(line, sizeof line, "{\"error\":%s,\"op\":\"spec\"}\n", quoted);
        if (write(sync_fd, line, (size_t)len) != len) return 1;
        return 1;
    }
    if (tty >= 0) fcntl(tty, F_SETFD, FD_CLOEXEC);  /* ours, not the container's */
    if (out >= 0) fcntl(out, F_SETFD, FD_CLOEXEC);
    if (hold >= 0) fcntl(hold, F_SETFD, FD_CLOEXEC);
    pid_t first = start_container(spec, sync_fd, go_fd);
    free_spec(spec);  /* the first process has its own copy: ours only weighs on the host */
    if (first < 0) return 1;
    return wait_for(first, argv, tty, out, hold);
}
