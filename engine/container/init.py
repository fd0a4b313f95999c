"""The container init program: run as `python -S -I init.py SPEC_FD SYNC_FD GO_FD` by the
runtime, single-threaded and with nothing but the standard library and engine/ loaded.

It enters the container's cgroup, unshares its namespaces and forks the container's first
process (PID 1 of the new PID namespace), which builds the mount tree inside the overlay root,
pivots into it, drops privileges and executes the service; meanwhile this process, still in
the host's namespaces, plumbs the first process's network namespace (loopback, a veth pair
per network). Messages to the runtime are JSON lines on SYNC_FD: {"pid": N} once the first
process exists and its network is plumbed (its pid on the host), then {"started": true} when
it has executed the service, or {"error": "...", "op": "..."}. Setup pauses before the final
exec until the runtime writes a byte to GO_FD (after its own steps). Nothing here executes a
program of the container before privileges are dropped, and every path inside the container
is resolved under its root (openat2 RESOLVE_IN_ROOT), so a symlink in the image cannot send
a mount or a write to the host.
"""

from __future__ import annotations

import marshal
import os
import resource
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from engine import linux
from engine.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
)

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_DEVICES = (  # name, major, minor (Docker's default set)
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
}


class SetupError(Exception):
    def __init__(self, op: str, detail: str) -> None:
        super().__init__(f"{op}: {detail}")
        self.op = op


def _step(op: str, fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except OSError as exc:
        raise SetupError(op, exc.strerror or str(exc)) from None


# -- paths inside the new root ---------------------------------------------------------------


def _resolve(root: int, path: str, directory: bool, create: str, depth: int = 0) -> int:
    """An O_PATH handle on `path` under `root`, symlinks resolved inside it; `create`: "dir"
    or "file" makes what is missing (parents as directories; a dangling symlink's target, as
    Docker's securejoin does, inside the root)."""
    rel = path.strip("/")
    if not rel:
        return os.dup(root)
    flags = os.O_PATH | (os.O_DIRECTORY if directory else 0)
    try:
        return linux.openat2(root, rel, flags, 0, _RESOLVE)
    except FileNotFoundError:
        if not create:
            raise
    if depth > 40:
        raise OSError(40, "Too many levels of symbolic links", path)  # ELOOP
    head, _, name = rel.rpartition("/")
    parent = _resolve(root, head, True, "dir", depth + 1)
    try:
        if create == "dir":
            os.mkdir(name, 0o755, dir_fd=parent)
        else:
            flags_new = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
            os.close(os.open(name, flags_new, 0o644, dir_fd=parent))
    except FileExistsError:
        link = os.readlink(name, dir_fd=parent)  # only a dangling symlink gets here
        target = link if link.startswith("/") else f"{head}/{link}"
        return _resolve(root, target, directory, create, depth + 1)
    finally:
        os.close(parent)
    return linux.openat2(root, rel, flags, 0, _RESOLVE)


def _mount_at(
    root: int,
    target: str,
    source: str,
    fstype: str | None,
    flags: int,
    data: str = "",
    directory: bool = True,
) -> None:
    op = f"mount {fstype or 'bind'} on {target}"
    try:
        fd = _resolve(root, target, directory, "dir" if directory else "file")
    except OSError as exc:
        raise SetupError(op, exc.strerror or str(exc)) from None
    try:
        _step(op, linux.mount, source, f"/proc/self/fd/{fd}", fstype, flags, data)
    finally:
        os.close(fd)


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _mknod(name: str, device: int, dir_fd: int) -> None:
    os.mknod(name, stat.S_IFCHR | 0o666, device, dir_fd=dir_fd)


def _remount_read_only(path: str, flags: int = 0) -> None:
    linux.mount("", path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


# -- the container's first process -----------------------------------------------------------


def _mounts(spec: dict, root: int) -> None:  # type: ignore[type-arg]
    own_net = "net" in spec["namespaces"] and not spec["join_net"]
    _mount_at(root, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount_at(root, "/dev", "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    dev = _resolve(root, "/dev", True, "")
    try:
        for name, major, minor in _DEVICES:
            if "user" in spec["namespaces"]:  # no mknod in a user namespace: bind the host's
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dev))
                node = f"/proc/self/fd/{dev}/{name}"
                _step(f"bind /dev/{name}", linux.mount, f"/dev/{name}", node, None, MS_BIND)
                continue
            _step(f"mknod /dev/{name}", _mknod, name, os.makedev(major, minor), dev)
            os.chmod(f"/proc/self/fd/{dev}/{name}", 0o666)
        for name, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ):
            os.symlink(target, name, dir_fd=dev)
        os.mkdir("pts", 0o755, dir_fd=dev)
        os.mkdir("shm", 0o1777, dir_fd=dev)
        os.mkdir("mqueue", 0o755, dir_fd=dev)
    finally:
        os.close(dev)
    _mount_at(
        root,
        "/dev/pts",
        "devpts",
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    _mount_at(
        root,
        "/dev/shm",
        "shm",
        "tmpfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        f"mode=1777,size={spec['shm_size']}",
    )
    _mount_at(root, "/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if own_net:
        _mount_at(root, "/sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    else:  # a sysfs of another network namespace cannot be mounted: bind the host's, read-only
        _mount_at(root, "/sys", "/sys", None, MS_BIND | MS_REC)
    for mount in spec["mounts"]:
        _user_mount(root, mount)


def _user_mount(root: int, mount: dict) -> None:  # type: ignore[type-arg]
    kind, target = mount["kind"], mount["target"]
    if kind == "tmpfs":
        _mount_at(root, target, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, mount["options"])
        return
    if kind == "mqueue":
        _mount_at(root, target, "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        return
    source = mount["source"]
    op = f"bind {source} on {target}"
    if source.startswith("fd:"):  # a detached copy the runtime took: attach it
        tree = int(source[3:])
        is_dir = stat.S_ISDIR(os.fstat(tree).st_mode)
        try:
            fd = _resolve(root, target, is_dir, "dir" if is_dir else "file")
        except OSError as exc:
            raise SetupError(op, exc.strerror or str(exc)) from None
        try:
            _step(op, linux.attach_tree, tree, fd)
        finally:
            os.close(fd)
            os.close(tree)
    else:
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as exc:
            raise SetupError(op, exc.strerror or "") from None
        flags = MS_BIND | (MS_REC if mount["recursive"] else 0)
        _mount_at(root, target, source, None, flags, directory=is_dir)
    fd = _resolve(root, target, is_dir, "")
    try:
        path = f"/proc/self/fd/{fd}"
        if mount["propagation"]:
            _step(
                f"propagation of {target}",
                linux.mount,
                "",
                path,
                None,
                _PROPAGATION[mount["propagation"]],
            )
        # Device nodes in a volume are inert (nodev): the container's /dev holds its devices.
        flags = MS_BIND | MS_REMOUNT | MS_NODEV | (MS_RDONLY if mount["read_only"] else 0)
        _step(f"options of {target}", linux.mount, "", path, None, flags)
    finally:
        os.close(fd)


def _rootfs_handle(spec: dict) -> int:  # type: ignore[type-arg]
    """An O_PATH handle on the root filesystem. In a user namespace its path may not be
    searchable: the working directory was set to it before (and unshare(CLONE_NEWNS) moved
    it to the same place in the new mount namespace)."""
    path = "." if "user" in spec["namespaces"] else spec["rootfs"]
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _pivot(root: int) -> None:
    os.fchdir(root)
    os.close(root)
    _step("pivot_root", linux.pivot_root, ".", ".")
    _step("detach the old root", linux.umount, ".", MNT_DETACH)
    os.chdir("/")


def _harden(spec: dict) -> None:  # type: ignore[type-arg]
    for key, value in spec["sysctls"]:
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise SetupError(f"sysctl {key}", exc.strerror or "") from None
    for path in spec["masked_paths"]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            _step(f"mask {path}", linux.mount, "tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
        else:
            _step(f"mask {path}", linux.mount, "/dev/null", path, None, MS_BIND)
    for path in spec["readonly_paths"]:
        if not os.path.exists(path):
            continue
        _step(f"read-only {path}", linux.mount, path, path, None, MS_BIND | MS_REC)
        _step(f"read-only {path}", _remount_read_only, path, MS_REC | MS_NOSUID | MS_NODEV)
    if spec["read_only"]:
        _step("read-only root", _remount_read_only, "/", MS_NODEV)
    # /dev is complete: read-only from now on, so no device node can be made where it works
    # (every other writable place is nodev). Its pts, shm and mqueue mounts stay writable.
    _step("read-only /dev", _remount_read_only, "/dev", MS_NOSUID)


def _privileges(spec: dict) -> None:  # type: ignore[type-arg]
    keep = 0
    for name in spec["capabilities"]:
        keep |= 1 << linux.CAPABILITIES[name]
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for number in range(last + 1):
        if not keep & (1 << number):
            _step("drop capabilities", linux.prctl, linux.PR_CAPBSET_DROP, number)
    _step("keep capabilities", linux.prctl, linux.PR_SET_KEEPCAPS, 1)
    _step("set groups", os.setgroups, list(spec["groups"]))
    _step(f"set gid {spec['gid']}", os.setresgid, spec["gid"], spec["gid"], spec["gid"])
    _step(f"set uid {spec['uid']}", os.setresuid, spec["uid"], spec["uid"], spec["uid"])
    # No inheritable capabilities, as Docker since 20.10 (CVE-2022-24769).
    _step("set capabilities", linux.capset, keep, keep, 0)
    _step(
        "clear ambient capabilities",
        linux.prctl,
        linux.PR_CAP_AMBIENT,
        linux.PR_CAP_AMBIENT_CLEAR_ALL,
    )
    if spec["no_new_privileges"]:
        _step("no_new_privs", linux.prctl, linux.PR_SET_NO_NEW_PRIVS, 1)


def _workdir(cwd: str) -> None:
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except OSError as exc:
        raise SetupError(f"working directory {cwd}", exc.strerror or "") from None
    # After pivot_root the old root is gone, so this holds by construction; check it anyway.
    if os.getcwd() != os.path.normpath("/" + cwd.lstrip("/")):
        raise SetupError(f"working directory {cwd}", "resolves outside the container")


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """execvpe without os.execvpe, which imports modules: after pivot_root the host's
    standard library is out of reach, so nothing may be imported any more."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    error: OSError = FileNotFoundError(2, "No such file or directory")
    for directory in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(directory or ".", name), argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            error = exc
    raise error


def install_seccomp(program: bytes) -> None:
    from engine.seccomp import install

    install(program)


def _first_process(spec: dict, go_fd: int, error_fd: int) -> None:  # type: ignore[type-arg]
    if spec["seccomp"]:  # imported now: after pivot_root there is no importing
        import engine.seccomp  # noqa: F401
    os.setsid()
    if spec["tty"]:  # stdin is the container's terminal: its controlling one
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    _step("make mounts private", linux.mount, "", "/", None, MS_REC | MS_PRIVATE)
    place = _rootfs_handle(spec)
    # A copy of the root's mount tree over it, ours to change: made and used through handles,
    # as the path may not be searchable by a user namespace's root.
    try:
        root = linux.open_tree(place, True)
        linux.attach_tree(root, place)
    except OSError as exc:
        raise SetupError("bind the root", exc.strerror or str(exc)) from None
    os.close(place)
    _mounts(spec, root)
    _pivot(root)
    _harden(spec)
    if "uts" in spec["namespaces"]:
        if spec["hostname"]:
            _step("sethostname", linux.sethostname, spec["hostname"])
        if spec["domainname"]:
            _step("setdomainname", linux.setdomainname, spec["domainname"])
    if spec["oom_score_adj"] is not None:  # before the capabilities go: lowering needs one
        _step(
            f"oom_score_adj {spec['oom_score_adj']}",
            _write_file,
            "/proc/self/oom_score_adj",
            str(spec["oom_score_adj"]),
        )
    for limit in spec["rlimits"]:
        _step(
            f"ulimit {limit['name']}",
            resource.setrlimit,
            getattr(resource, limit["name"]),
            (limit["soft"], limit["hard"]),
        )
    if os.read(go_fd, 1) != b"g":
        raise SetupError("start", "the runtime went away before the start")
    try:
        _become(spec)
    except OSError as exc:
        raise SetupError(f"exec {spec['argv'][0]}", exc.strerror or str(exc)) from None


def _become(spec: dict) -> None:  # type: ignore[type-arg]
    """The last steps, in the container (first process or exec): working directory, user and
    capabilities, seccomp, then execute the process. Returns only by raising OSError (exec)."""
    _workdir(spec["cwd"])
    if spec["seccomp"] and not spec["no_new_privileges"]:
        # Without no_new_privs only CAP_SYS_ADMIN may install a filter: do it before the
        # capabilities go (as runc does); the filter allows what the rest of setup calls.
        _step("seccomp", install_seccomp, spec["seccomp"])
    _privileges(spec)
    env = dict(item.split("=", 1) if "=" in item else (item, "") for item in spec["env"])
    for sig in (13, 25):  # SIGPIPE, SIGXFSZ: Python ignores them, and ignoring survives exec
        linux.reset_signal(sig)
    linux.close_range_cloexec(3)  # no descriptor of the host reaches the service
    if spec["seccomp"] and spec["no_new_privileges"]:
        _step("seccomp", install_seccomp, spec["seccomp"])
    _execvpe(spec["argv"], env)


def _send(fd: int, message: dict) -> None:  # type: ignore[type-arg]
    os.write(fd, _encode(message) + b"\n")


def _encode(message: dict) -> bytes:  # type: ignore[type-arg]
    """A flat message as one JSON line (no json module: it costs the init 10 ms to import)."""
    items = []
    for key, value in message.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = (
                '"'
                + "".join(
                    c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                    for c in str(value)
                )
                + '"'
            )
        items.append(f'"{key}":{text}')
    return ("{" + ",".join(items) + "}").encode()


def main(spec_fd: int, sync_fd: int, go_fd: int) -> None:
    """`init.py SPEC_FD SYNC_FD GO_FD`, run by the shim: make the container, then end (its
    first process is the shim's now)."""
    with os.fdopen(spec_fd, "rb") as f:
        spec = marshal.loads(f.read())
    start(spec, sync_fd, go_fd)
    os._exit(0)


def start(spec: dict, sync_fd: int, go_fd: int) -> int:  # type: ignore[type-arg]
    """Fork the container's first process in new namespaces and report to the runtime on
    `sync_fd`; the first process's pid, or -1 when it could not start.

    Only the PID namespace is made here (it takes effect for children); the first process
    makes the others itself, so this process stays in the host's mount namespace and what it
    does after (the zygote's fork becomes the shim) is not inside the container."""
    userns = "user" in spec["namespaces"]
    try:
        if "pid" in spec["namespaces"] and not userns:
            _step("unshare the pid namespace", linux.unshare, linux.CLONE_NEWPID)
    except SetupError as exc:
        _send(sync_fd, {"error": str(exc), "op": exc.op})
        return -1
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    maps_r, maps_w = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        os.close(error_r)
        os.close(ready_r)
        os.close(maps_w)
        os.close(sync_fd)
        try:
            if userns:
                _user_namespace(spec, ready_w, maps_r)  # returns in the first process
            else:
                _namespaces(spec)
            os.close(ready_w)  # the namespaces exist: the runtime may plumb them
            _enter_cgroup(spec)
            _first_process(spec, go_fd, error_w)
        except SetupError as exc:
            os.write(error_w, _encode({"error": str(exc), "op": exc.op}))
        except BaseException as exc:
            os.write(error_w, _encode({"error": f"{type(exc).__name__}: {exc}", "op": "setup"}))
        os._exit(127)
    os.close(error_w)
    os.close(ready_w)
    os.close(maps_r)
    first = child
    # End of file: the namespaces exist, or the first process failed. With a user namespace,
    # "u" asks for its id maps first, and "p<pid>" names the first process (a grandchild).
    while message := os.read(ready_r, 64):
        if message.startswith(b"u"):
            try:
                _write_maps(child, spec)
            except OSError:
                pass  # the child sees the maps missing and reports it
            os.write(maps_w, b"m")
            message = message[1:]
        if message.startswith(b"p"):
            first = int(message[1:])
    os.close(ready_r)
    os.close(maps_w)
    os.close(go_fd)
    if first != child:
        os.waitpid(child, 0)  # the intermediate process, which ended
    failure = _plumb(spec, first)
    if failure is not None:
        os.kill(first, 9)  # it waits for the word to go: its own error, if any, comes first
    else:
        _send(sync_fd, {"pid": first})
    report = b""
    while chunk := os.read(error_r, 65536):
        report += chunk
    os.close(error_r)
    if failure is not None and not report:
        report = _encode({"error": failure, "op": "network"})
    if report:
        os.write(sync_fd, report + b"\n")
    else:
        _send(sync_fd, {"started": True})
    os.close(sync_fd)
    return -1 if report else first


def _plumb(spec: dict, pid: int) -> str | None:  # type: ignore[type-arg]
    """Connect the network namespace of the first process `pid`, when it is one of its own:
    loopback up, and a veth pair per network with its addresses and routes (engine/network,
    standard library only, loaded here when first needed). This process is still in the
    host's namespaces. What went wrong, or None."""
    if "net" not in spec["namespaces"] or spec["join_net"]:
        return None
    from engine.network.errors import NetworkError
    from engine.network.veth import Attachment, attach, loopback_up

    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open the network namespace of the first process: {exc.strerror}"
    try:
        if not spec["networks"]:
            loopback_up(fd)
        for network in spec["networks"]:
            attach(fd, Attachment.from_plain(network))
    except (NetworkError, OSError) as exc:
        return str(exc)
    finally:
        os.close(fd)
    return None


def _write_maps(pid: int, spec: dict) -> None:  # type: ignore[type-arg]
    for name in ("uid_map", "gid_map"):
        text = "".join(f"{inside} {outside} {count}\n" for inside, outside, count in spec[name])
        _write_file(f"/proc/{pid}/{name}", text)


def _user_namespace(spec: dict, ready_w: int, maps_r: int) -> None:  # type: ignore[type-arg]
    """In the child, for a container with a user namespace: make the user namespace first,
    so every other namespace belongs to it (the container's root then administers its own
    network, hostname and mounts, and nothing of the host's). The host's root, our parent,
    writes its id maps; then this process makes the other namespaces and forks the first
    process (PID 1 of the new PID namespace, owned by the user namespace), reports its pid
    and ends; this function returns in the first process."""
    if spec["seccomp"]:  # the host's files may be out of reach in the user namespace
        import engine.seccomp  # noqa: F401
    _step("enter the root filesystem", os.chdir, spec["rootfs"])
    for path in spec["cgroup_files"]:  # host files: join before becoming unprivileged
        _step("enter the cgroup", _write_file, path, "0")
    for limit in spec["rlimits"]:  # raising a hard limit needs the host's CAP_SYS_RESOURCE
        _step(
            f"ulimit {limit['name']}",
            resource.setrlimit,
            getattr(resource, limit["name"]),
            (limit["soft"], limit["hard"]),
        )
    if spec["join_net"]:  # a namespace of the host's: joined while still privileged there
        _join_net(spec["join_net"])
    _step("unshare the user namespace", linux.unshare, linux.CLONE_NEWUSER)
    os.write(ready_w, b"u")
    if os.read(maps_r, 1) != b"m":
        raise SetupError("user namespace", "the runtime went away")
    os.close(maps_r)
    _step("become the container's root", os.setresgid, 0, 0, 0)
    _step("become the container's root", os.setresuid, 0, 0, 0)
    _namespaces(spec)
    first = os.fork()
    if first:
        os.write(ready_w, b"p%d" % first)
        os._exit(0)


def _namespaces(spec: dict) -> None:  # type: ignore[type-arg]
    """In the first process: join or make its namespaces (not the cgroup one: later)."""
    userns = "user" in spec["namespaces"]
    flags = 0
    for name in spec["namespaces"]:
        if name in ("cgroup", "user") or (name == "pid" and not userns):
            continue  # the cgroup namespace later; the pid one by the parent (or here, last)
        if not (name == "net" and spec["join_net"]):
            flags |= linux.NAMESPACE_FLAGS[name]
    if spec["join_net"] and not userns:
        _join_net(spec["join_net"])
    _step("unshare", linux.unshare, flags)


def _join_net(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    _step("join the network namespace", linux.setns, fd, linux.CLONE_NEWNET)
    os.close(fd)


def _enter_cgroup(spec: dict) -> None:  # type: ignore[type-arg]
    if "user" not in spec["namespaces"]:  # else joined before the user namespace was made
        for path in spec["cgroup_files"]:
            _step("enter the cgroup", _write_file, path, "0")  # "0": the writing process
    if "cgroup" in spec["namespaces"]:
        _step("unshare the cgroup namespace", linux.unshare, linux.CLONE_NEWCGROUP)


# The user namespace first: it owns the others; mnt last: it changes the root.
_JOIN_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")


def main_exec(spec_fd: int) -> None:
    """`init.py exec SPEC_FD`: run a process inside a running container (spec["pid"]): enter
    its cgroup and namespaces, drop to its user and capabilities, execute; this program's exit
    status is the process's."""
    import fcntl
    import signal  # imported any more
    import termios

    with os.fdopen(spec_fd, "rb") as f:
        spec = marshal.loads(f.read())
    if spec["seccomp"]:
        import engine.seccomp  # noqa: F401
    target = spec["pid"]
    try:
        handles = []
        for name in _JOIN_ORDER:
            if name in spec["namespaces"]:
                fd = os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                handles.append((name, fd))
        for path in spec["cgroup_files"]:
            with open(path, "w") as cgroup:
                cgroup.write(str(os.getpid()))
        for name, fd in handles:
            _step(f"join the {name} namespace", linux.setns, fd, linux.NAMESPACE_FLAGS[name])
            os.close(fd)
    except (SetupError, OSError) as exc:
        sys.stderr.write(f"composer exec: {exc}\n")
        os._exit(126)
    child = os.fork()
    if child == 0:
        try:
            if spec["tty"]:  # stdin is a terminal: make it the process's controlling one
                import fcntl
                import termios

                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            try:
                _become(spec)
            except OSError as exc:
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                sys.stderr.write(f"composer exec: {spec['argv'][0]}: {exc.strerror}\n")
                os._exit(code)
        except SetupError as exc:
            sys.stderr.write(f"composer exec: {exc}\n")
            os._exit(126)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda number, _frame: os.kill(child, number))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(126)
        except InterruptedError:
            continue
    os._exit(
        os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    )


if __name__ == "__main__":
    if sys.argv[1] == "exec":
        main_exec(int(sys.argv[2]))
    else:
        main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
