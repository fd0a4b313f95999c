"""Layer unpacking against GNU tar, and image pulls against skopeo, in the same run.

Unpack: a ~100 MiB layer tar of ~20k files (sizes log-normal from 100 B to 1 MiB, in nested
directories, with symlinks and hard links, text of random words), plain and gzip -6. Each run
unpacks into a fresh empty directory on the same filesystem (by default a fresh ext4 on a loop
device; see --fs): `unpack_layer` in this process, `tar -x -f FILE -C DIR` (`tar -xzf` for
gzip) as a child. The previous run's tree is removed and dirty pages are written out (`sync`)
before each run, outside the timed part. Runs are interleaved, the order reversed every other
run. Median of N.

Pull: a ~100 MiB image of incompressible files in 4 layers (`big_image`), pushed to a local
docker-registry; `RegistryClient.pull` into a fresh store (download, verify, unpack) against
`skopeo copy docker://... oci:DIR:big` and `... dir:DIR` (download and verify only), and
against skopeo followed by `tar -xzf` of each layer (the same work as ours, one after another).
Our pull is also timed with unpacking stubbed out (download only), and its phases are timed
from the progress callback.

Run as root: .venv/bin/python bench/images_bench.py [--runs N] [--profile] [--fs loop|tmpfs|here]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import math
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

from engine.images.reference import parse_reference  # noqa: E402
from engine.images.registry import PullProgress, RegistryClient  # noqa: E402
from engine.images.store import ImageStore  # noqa: E402
from engine.images.unpack import decompressed, unpack_layer  # noqa: E402
from tests.images.imagetools import OciLayout, Registry, big_image, missing_tools  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "images.json"
MiB = 1 << 20
LOOP_SIZE = 16 << 30


# --------------------------------------------------------------------------- helpers


def median(values: list[float]) -> float:
    return statistics.median(values)


class Scratch:
    """A new empty directory for each run, under `root`.

    With `recycle`, the previous one is removed first (outside any timing); without, all stay
    until the very end. Do not recycle on ext4 without a journal (this machine's root
    filesystem): there, creating an inode skips, one buffer lookup each, every free inode of
    its group deleted in the last minute or so (`recently_deleted()` in fs/ext4/ialloc.c), so
    after the removal of a 20k-file tree files are made 5-20x slower, by tar and by us alike.
    """

    def __init__(self, root: Path, recycle: bool) -> None:
        self.root = root
        self.recycle = recycle
        self.count = 0
        self._last: Path | None = None

    def new(self, label: str) -> Path:
        """A new empty directory; dirty pages written out first (`sync`)."""
        if self.recycle and self._last is not None:
            shutil.rmtree(self._last)
        self.count += 1
        path = self._last = self.root / f"{self.count:03d}-{label}"
        path.mkdir(parents=True)
        os.sync()
        os.sync()  # a loop device's backing file, written by the first
        return path


@contextlib.contextmanager
def workspace(kind: str, tmp: Path | None, keep: bool) -> Iterator[Path]:
    """The directory the bench works in: on a fresh ext4 (with a journal, mkfs defaults) on a
    loop device (`loop`), on a fresh tmpfs (`tmpfs`), or in a temporary directory of `tmp`
    (`here`). Unmounted and removed at the end, unless `keep` (then only unmounted)."""
    base = Path(tempfile.mkdtemp(prefix="images-bench-", dir=tmp))
    mnt: Path | None = None
    try:
        if kind == "loop":
            image = base / "ext4.img"
            with open(image, "wb") as f:
                f.truncate(LOOP_SIZE)  # sparse
            run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0", str(image)])
            mnt = base / "mnt"
            mnt.mkdir()
            run(["mount", "-o", "loop", str(image), str(mnt)])
        elif kind == "tmpfs":
            mnt = base / "mnt"
            mnt.mkdir()
            run(["mount", "-t", "tmpfs", "-o", "size=8g", "tmpfs", str(mnt)])
        yield mnt or base
    finally:
        if mnt is not None:
            done = subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], check=False)
        if keep and kind == "here":
            print(f"kept {base}")
        else:
            started = time.perf_counter()
            shutil.rmtree(base, ignore_errors=True)
            print(f"removed {base} in {time.perf_counter() - started:.1f} s")


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def tree_summary(root: Path) -> tuple[int, int]:
    """(entries, bytes of regular files) under `root`, links not followed."""
    entries = size = 0
    for top, dirs, files in os.walk(root):
        entries += len(dirs) + len(files)
        for name in files:
            st = os.lstat(os.path.join(top, name))
            if not os.path.islink(os.path.join(top, name)):
                size += st.st_size
    return entries, size


def profile_top(profile: cProfile.Profile | pstats.Stats, count: int = 15) -> str:
    out = io.StringIO()
    stats = profile if isinstance(profile, pstats.Stats) else pstats.Stats(profile, stream=out)
    stats.stream = out  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("tottime").print_stats(count)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    head = [line for line in lines[:start] if "function calls" in line]
    return "\n".join([*head, *lines[start:]]).rstrip()


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except OSError:
        return "absent"
    return out.strip().splitlines()[0] if out.strip() else "?"


def machine_info(work: Path) -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fs = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "--target", str(work)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tar": tool_version(["tar", "--version"]),
        "gzip": tool_version(["gzip", "--version"]),
        "skopeo": tool_version(["skopeo", "--version"]),
        "registry": tool_version(["/usr/bin/docker-registry", "--version"]),
        "filesystem": fs,
        "workdir": str(work),
    }


# --------------------------------------------------------------------------- the layer


def make_layer(path: Path, nfiles: int, total: int, seed: int = 1) -> dict[str, Any]:
    """Write an uncompressed layer tar like a real one and return what it holds.

    Files: `nfiles` regular files with log-normal sizes clipped to [100 B, 1 MiB], scaled so
    that they hold about `total` bytes, spread over nested directories (depth up to 6); plus
    symlinks (4 % of files, relative, to other files) and hard links (0.5 %). The content is
    text of random words cut from an 8 MiB pool (gzip -6 makes it about a third of its size).
    Entries go in directory-walk order, each directory before what it holds, as tar writes them.
    """
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(6000)]
    pool_words: list[str] = []
    length = 0
    while length < 8 * MiB + MiB:
        line = " ".join(rng.choices(vocab, k=rng.randint(4, 16))) + "\n"
        pool_words.append(line)
        length += len(line)
    pool = "".join(pool_words).encode()

    # Directories: each a child of an earlier one, depth at most 6.
    ndirs = max(1, nfiles // 20)
    dirs: list[tuple[str, int]] = [("", 0)]
    for i in range(ndirs):
        parent, depth = rng.choice([d for d in dirs[-200:] if d[1] < 6] or [("", 0)])
        name = f"{rng.choice(vocab)}{i}"
        dirs.append((f"{parent}/{name}" if parent else name, depth + 1))

    # Sizes: z ~ N(0, 1), size = clip(exp(mu + 1.8 z)); mu found so that they sum to `total`.
    zs = [rng.gauss(0.0, 1.0) for _ in range(nfiles)]

    def sizes_for(mu: float) -> list[int]:
        return [min(MiB, max(100, int(math.exp(mu + 1.8 * z)))) for z in zs]

    lo, hi = 0.0, 14.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(sizes_for(mid)) < total else (lo, mid)
    sizes = sizes_for(lo)
    exts = [".py", ".txt", ".so", ".h", ".json", "", ".md", ".conf"]

    content: dict[str, list[tuple[str, str, Any]]] = {d: [] for d, _ in dirs}
    files: list[str] = []
    for i, size in enumerate(sizes):
        where = rng.choice(dirs)[0]
        name = f"{rng.choice(vocab)}_{i}{rng.choice(exts)}"
        full = f"{where}/{name}" if where else name
        content[where].append((name, "file", size))
        files.append(full)
    nsym, nhard = nfiles * 4 // 100, nfiles // 200
    for i in range(nsym):
        where = rng.choice(dirs)[0]
        target = rng.choice(files)
        rel = os.path.relpath(target, where or ".")
        content[where].append((f"link{i}", "sym", rel))
    for i in range(nhard):
        where = rng.choice(dirs)[0]
        content[where].append((f"hard{i}", "hard", None))  # to a file written before it

    children: dict[str, list[str]] = {d: [] for d, _ in dirs}
    for d, _ in dirs[1:]:
        children[d.rpartition("/")[0]].append(d)

    stats = {"files": 0, "dirs": 0, "symlinks": 0, "hardlinks": 0, "data_bytes": 0}
    mtime = 1_700_000_000
    written: list[str] = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:

        def entry(name: str) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = mtime, 0, 0
            return info

        stack = [""]
        while stack:
            d = stack.pop()
            if d:
                info = entry(d)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                stats["dirs"] += 1
            for name, kind, arg in sorted(content[d]):
                full = f"{d}/{name}" if d else name
                info = entry(full)
                if kind == "file":
                    offset = rng.randrange(0, len(pool) - arg)
                    info.size, info.mode = arg, rng.choice((0o644, 0o644, 0o755))
                    tar.addfile(info, io.BytesIO(pool[offset : offset + arg]))
                    stats["files"] += 1
                    stats["data_bytes"] += arg
                    written.append(full)
                elif kind == "sym":
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, arg, 0o777
                    tar.addfile(info)
                    stats["symlinks"] += 1
                elif written:
                    info.type, info.mode = tarfile.LNKTYPE, 0o644
                    info.linkname = rng.choice(written)
                    tar.addfile(info)
                    stats["hardlinks"] += 1
            stack.extend(sorted(children[d], reverse=True))
    stats["tar_bytes"] = path.stat().st_size
    stats["size_median"] = int(statistics.median(sizes))
    stats["size_max"] = max(sizes)
    return stats


# --------------------------------------------------------------------------- unpack bench


def ours_unpack(src: Path, dest: Path) -> None:
    with open(src, "rb") as stream:
        unpack_layer(stream, dest, what="bench layer")


def read_only(src: Path) -> None:
    """Decompress and hash the stream, write nothing: the floor under unpack_layer."""
    import hashlib

    sha = hashlib.sha256()
    with open(src, "rb") as stream:
        plain = decompressed(stream)
        while chunk := plain.read(MiB):
            sha.update(chunk)


def bench_unpack(work: Path, scratch: Scratch, args: argparse.Namespace) -> dict[str, Any]:
    layer_dir = work / "layer"
    layer_dir.mkdir()
    plain = layer_dir / "layer.tar"
    gz = layer_dir / "layer.tar.gz"
    started = time.perf_counter()
    info = make_layer(plain, args.files, args.size_mb * MiB)
    with open(gz, "wb") as out:
        subprocess.run(["gzip", "-6", "-n", "-c", str(plain)], stdout=out, check=True)
    info["gzip_bytes"] = gz.stat().st_size
    print(
        f"layer: {info['files']} files, {info['dirs']} dirs, {info['symlinks']} symlinks, "
        f"{info['hardlinks']} hard links; {info['data_bytes'] / MiB:.1f} MiB of data "
        f"(median file {info['size_median']} B, largest {info['size_max']} B); "
        f"tar {info['tar_bytes'] / MiB:.1f} MiB, gzip -6 {info['gzip_bytes'] / MiB:.1f} MiB "
        f"(made in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    for f in (plain, gz):  # into the page cache: every contender reads it warm
        read_only(f)

    cases: dict[str, Callable[[Path], object]] = {
        "composer unpack_layer (tar)": lambda dest: ours_unpack(plain, dest),
        "tar -x -f": lambda dest: run(["tar", "-x", "-f", str(plain), "-C", str(dest)]),
        "composer unpack_layer (tar.gz)": lambda dest: ours_unpack(gz, dest),
        "tar -xzf": lambda dest: run(["tar", "-x", "-z", "-f", str(gz), "-C", str(dest)]),
        "decompress+sha256 only (tar)": lambda _dest: read_only(plain),
        "decompress+sha256 only (tar.gz)": lambda _dest: read_only(gz),
    }
    # Same result: entry count and bytes of ours and tar's trees (this is also the warm-up).
    check: dict[str, tuple[int, int]] = {}
    for name in ("composer unpack_layer (tar)", "tar -x -f"):
        dest = scratch.new("check")
        cases[name](dest)
        check[name] = tree_summary(dest)
    if len(set(check.values())) != 1:
        print(f"WARNING: the trees differ: {check}")

    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for n in range(args.runs):
        order = names if n % 2 == 0 else names[::-1]
        for name in order:
            dest = scratch.new("unpack")
            times[name].append(timed(lambda: cases[name](dest)))  # noqa: B023
        print(f"  unpack run {n + 1}/{args.runs} done", flush=True)

    profiles: dict[str, str] = {}
    if args.profile:
        for label, src in (("tar", plain), ("tar.gz", gz)):
            dest = scratch.new("profile")
            profile = cProfile.Profile()
            profile.enable()
            ours_unpack(src, dest)
            profile.disable()
            profiles[label] = profile_top(profile)

    medians = {name: median(ts) for name, ts in times.items()}
    ratios = {
        "tar": medians["composer unpack_layer (tar)"] / medians["tar -x -f"],
        "tar.gz": medians["composer unpack_layer (tar.gz)"] / medians["tar -xzf"],
    }
    return {
        "layer": info,
        "runs": args.runs,
        "times": times,
        "medians": medians,
        "ratios": ratios,
        "target_ratio": 1.5,
        "trees": {k: list(v) for k, v in check.items()},
        "profiles": profiles,
    }


# --------------------------------------------------------------------------- pull bench


class DownloadOnlyStore(ImageStore):
    """A store that downloads and verifies blobs but unpacks nothing and records no image."""

    def ensure_layer(self, blob: str, what: str, diff_id: str | None = None) -> str:
        return diff_id or ""

    def add_image(self, manifest_digest: str, names: Any, repo_digest: Any = None) -> Any:
        return None


class ProfiledStore(ImageStore):
    """A store whose layer unpacks (in worker threads) are each profiled."""

    profiles: list[cProfile.Profile]

    def ensure_layer(self, blob: str, what: str, diff_id: str | None = None) -> str:
        profile = cProfile.Profile()
        profile.enable()
        try:
            return super().ensure_layer(blob, what, diff_id)
        finally:
            profile.disable()
            self.profiles.append(profile)


def our_pull(
    store: ImageStore, ref_text: str, main_profile: cProfile.Profile | None = None
) -> dict[str, Any]:
    """Pull `ref_text` into `store`; the total time and the phases seen by the progress callback."""
    ref = parse_reference(ref_text)
    # A plain store unpacks in worker processes, as composer does; the bench's own stores
    # (download only, profiled) need their methods called, in threads.
    client = RegistryClient(store, unpack_in_processes=type(store) is ImageStore)
    events: list[tuple[float, PullProgress]] = []

    def progress(event: PullProgress) -> None:
        events.append((time.perf_counter(), event))

    started = time.perf_counter()
    if main_profile is not None:
        main_profile.enable()
    anyio.run(client.pull, ref, progress)
    if main_profile is not None:
        main_profile.disable()
    total = time.perf_counter() - started

    first: dict[tuple[str, str], float] = {}
    for when, event in events:
        first.setdefault((event.digest, event.status), when - started)
    layers = sorted({e.digest for _, e in events})

    def at(digest: str, status: str) -> float:
        return first.get((digest, status), math.nan)

    verify = [at(d, "extracting") - at(d, "verifying") for d in layers]
    unpack = [at(d, "done") - at(d, "extracting") for d in layers]
    return {
        "total": total,
        "manifest_and_config": min(at(d, "waiting") for d in layers),
        "downloads_done": max(at(d, "verifying") for d in layers),
        "verified": max(at(d, "extracting") for d in layers),
        "layers_done": max((at(d, "done") for d in layers), default=math.nan),
        "verify_fsync_sum": sum(verify),
        "unpack_sum": sum(unpack),
        "unpack_max": max(unpack),
        "layers": len(layers),
    }


def bench_pull(work: Path, scratch: Scratch, args: argparse.Namespace) -> dict[str, Any]:
    registry = Registry(work / "registry")
    layout_dir = work / "layout"
    try:
        started = time.perf_counter()
        layout = OciLayout(layout_dir)
        total = big_image(layout, "big:1", args.pull_mb, args.pull_files, layers=args.pull_layers)
        registry.start()
        registry.push(layout.ref("big:1"), "big:1")
        blobs = sum(int(layer["size"]) for layer in layout.manifest("big:1")["layers"])
        ref = registry.image("big:1")
        print(
            f"image: {total / MiB:.0f} MiB of random bytes in {args.pull_files} files, "
            f"{args.pull_layers} gzip layers ({blobs / MiB:.1f} MiB of blobs), at {ref} "
            f"(registry pid {registry.pid}; built and pushed in "
            f"{time.perf_counter() - started:.1f} s)",
            flush=True,
        )

        def ours(stores: Path) -> dict[str, Any]:
            return our_pull(ImageStore(stores / "images"), ref)

        def ours_download_only(stores: Path) -> dict[str, Any]:
            return our_pull(DownloadOnlyStore(stores / "images"), ref)

        skopeo = ["skopeo", "copy", "--insecure-policy", "--quiet", "--src-tls-verify=false"]

        def skopeo_oci(stores: Path) -> None:
            run([*skopeo, f"docker://{ref}", f"oci:{stores / 'oci'}:big"])

        def skopeo_dir(stores: Path) -> None:
            run([*skopeo, f"docker://{ref}", f"dir:{stores / 'dir'}"])

        def skopeo_then_tar(stores: Path) -> None:
            skopeo_oci(stores)
            manifest = json.loads((stores / "oci" / "index.json").read_text())["manifests"][0]
            blob_dir = stores / "oci" / "blobs" / "sha256"
            body = json.loads((blob_dir / manifest["digest"].split(":")[1]).read_text())
            for n, layer in enumerate(body["layers"]):
                dest = stores / "rootfs" / str(n)
                dest.mkdir(parents=True)
                blob = blob_dir / layer["digest"].split(":")[1]
                run(["tar", "-x", "-z", "-f", str(blob), "-C", str(dest)])

        cases: dict[str, Callable[[Path], Any]] = {
            "composer pull (download+unpack)": ours,
            "composer pull, unpack stubbed": ours_download_only,
            "skopeo copy -> oci:": skopeo_oci,
            "skopeo copy -> dir:": skopeo_dir,
            "skopeo -> oci: + tar -xzf each layer": skopeo_then_tar,
        }
        for name in cases:  # one warm-up each
            cases[name](scratch.new("warm-up"))

        times: dict[str, list[float]] = {name: [] for name in cases}
        phases: dict[str, list[dict[str, Any]]] = {
            "composer pull (download+unpack)": [],
            "composer pull, unpack stubbed": [],
        }
        names = list(cases)
        for n in range(args.runs):
            order = names if n % 2 == 0 else names[::-1]
            for name in order:
                stores = scratch.new("pull")
                started = time.perf_counter()
                result = cases[name](stores)
                times[name].append(time.perf_counter() - started)
                if isinstance(result, dict):
                    phases[name].append(result)
            print(f"  pull run {n + 1}/{args.runs} done", flush=True)

        profiles: dict[str, str] = {}
        if args.profile:
            store = ProfiledStore(scratch.new("profile") / "images")
            store.profiles = []
            main = cProfile.Profile()
            our_pull(store, ref, main)
            profiles["event loop thread"] = profile_top(main)
            if store.profiles:
                merged = pstats.Stats(store.profiles[0])
                for extra in store.profiles[1:]:
                    merged.add(extra)
                profiles["unpack threads (ensure_layer, merged)"] = profile_top(merged)

        medians = {name: median(ts) for name, ts in times.items()}
        phase_medians = {
            name: {key: median([r[key] for r in rs]) for key in rs[0]}
            for name, rs in phases.items()
            if rs
        }
        ratios = {
            "vs skopeo oci:": medians["composer pull (download+unpack)"]
            / medians["skopeo copy -> oci:"],
            "vs skopeo dir:": medians["composer pull (download+unpack)"]
            / medians["skopeo copy -> dir:"],
            "unpack stubbed vs skopeo oci:": medians["composer pull, unpack stubbed"]
            / medians["skopeo copy -> oci:"],
            "vs skopeo + tar": medians["composer pull (download+unpack)"]
            / medians["skopeo -> oci: + tar -xzf each layer"],
        }
        return {
            "image": {
                "bytes": total,
                "files": args.pull_files,
                "layers": args.pull_layers,
                "blob_bytes": blobs,
            },
            "runs": args.runs,
            "times": times,
            "medians": medians,
            "phases": phase_medians,
            "ratios": ratios,
            "target_ratio": 1.2,
            "profiles": profiles,
        }
    finally:
        registry.stop()


# --------------------------------------------------------------------------- main


def table(rows: list[tuple[str, list[float]]]) -> str:
    lines = ["| command | median | min | max |", "|---|---:|---:|---:|"]
    for name, ts in rows:
        lines.append(f"| {name} | {median(ts):.3f} s | {min(ts):.3f} s | {max(ts):.3f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=20000, help="regular files in the layer")
    parser.add_argument("--size-mb", type=int, default=100, help="MiB of file data in the layer")
    parser.add_argument("--pull-mb", type=int, default=100)
    parser.add_argument("--pull-files", type=int, default=4000)
    parser.add_argument("--pull-layers", type=int, default=4)
    parser.add_argument("--only", choices=("unpack", "pull"), help="run one half only")
    parser.add_argument("--profile", action="store_true", help="print cProfile top 15 (tottime)")
    parser.add_argument(
        "--fs",
        choices=("loop", "tmpfs", "here"),
        default="loop",
        help="where to unpack and pull: a fresh ext4 on a loop device (default), a fresh "
        "tmpfs, or a temporary directory in --tmp",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where the work directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (--fs here)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON results file")
    args = parser.parse_args()

    if os.geteuid() != 0:
        print("run as root: unpacking sets owners (as tar does for root)", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/images_bench.py", *sys.argv[1:]]),
    }
    with workspace(args.fs, args.tmp, args.keep) as work:
        scratch = Scratch(work / "runs", recycle=args.fs != "here")
        machine = results["machine"] = machine_info(work)
        machine["fs_kind"] = args.fs
        print(
            f"{machine['cpus']} cpus ({machine['cpu']}), Linux {machine['kernel']}, "
            f"Python {machine['python']}, {machine['tar']}, {machine['skopeo']}; "
            f"work dir {work} ({args.fs}: {machine['filesystem']})",
            flush=True,
        )
        if args.only in (None, "unpack"):
            results["unpack"] = bench_unpack(work, scratch, args)
        if args.only in (None, "pull"):
            missing = missing_tools()
            if missing:
                print(f"pull skipped: missing {', '.join(missing)}")
            else:
                results["pull"] = bench_pull(work, scratch, args)

    if "unpack" in results:
        u = results["unpack"]
        print(f"\nUnpack ({u['runs']} runs each):\n")
        print(table(list(u["times"].items())))
        print(
            f"\ncomposer / tar: {u['ratios']['tar']:.2f}x plain, {u['ratios']['tar.gz']:.2f}x "
            f"gzip (target <= {u['target_ratio']}x)"
        )
        for label, text in u["profiles"].items():
            print(f"\nProfile of one unpack_layer ({label}), top 15 by tottime:\n{text}")
    if "pull" in results:
        p = results["pull"]
        print(f"\nPull ({p['runs']} runs each):\n")
        print(table(list(p["times"].items())))
        r = p["ratios"]
        print(
            f"\ncomposer pull / skopeo: {r['vs skopeo oci:']:.2f}x oci:, "
            f"{r['vs skopeo dir:']:.2f}x dir: (target <= {p['target_ratio']}x); unpack "
            f"stubbed / skopeo oci: {r['unpack stubbed vs skopeo oci:']:.2f}x; "
            f"composer pull / (skopeo + tar): {r['vs skopeo + tar']:.2f}x"
        )
        print("\nPhases of our pull (medians, seconds from the start of pull()):\n")
        keys = [
            ("manifest_and_config", "manifest + config fetched (first layer queued)"),
            ("downloads_done", "last layer's bytes received"),
            ("verified", "last layer verified (digest, fsync, rename)"),
            ("layers_done", "last layer unpacked"),
            ("total", "pull() returned"),
            ("verify_fsync_sum", "sum over layers: verify + fsync + rename"),
            ("unpack_sum", "sum over layers: unpack (ensure_layer)"),
            ("unpack_max", "longest single layer unpack"),
        ]
        names = list(p["phases"])
        print("| phase | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for key, label in keys:
            cells = [f"{p['phases'][n][key]:.3f}" for n in names]
            print(f"| {label} | " + " | ".join(cells) + " |")
        for label, text in p["profiles"].items():
            print(f"\nProfile of one pull, {label}, top 15 by tottime:\n{text}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
