#!/bin/sh
# Makes the image the examples use, `busybox:local`, from Debian's busybox-static: a root
# filesystem of one static binary and its applet links, imported as a one-layer image.
# Usage: examples/busybox-image.sh [NAME]   (run as root; needs `composer` on the PATH)
set -eu
name="${1:-busybox:local}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
# proc, dev and sys: the mount points every container needs (as distribution images have them;
# otherwise each container makes them in its writable layer at every start).
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/srv" "$root/proc" "$root/dev" "$root/sys"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar --numeric-owner -C "$root" -czf "$work/rootfs.tar.gz" .
composer image import "$work/rootfs.tar.gz" "$name" --cmd sh
