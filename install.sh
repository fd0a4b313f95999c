#!/bin/sh
# Installs composer and everything its tests need on Debian (run as root), then shows it
# working on an example stack.  Usage: ./install.sh [--no-example]
set -eu
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# python3-venv: the virtual environment; gcc, libc6-dev: the container shim and init (a small
# static C program: engine/container/shim.c, init.c); libseccomp2: seccomp filters; tini: `init: true`; busybox-static, skopeo, umoci: test images;
# docker-registry: a real registry on 127.0.0.1 for pull tests; iproute2: test assertions;
# libnftables1: outbound NAT (engine/network/nat.py).
apt-get install -y -q --no-install-recommends \
    python3 python3-venv ca-certificates iproute2 gcc libc6-dev libseccomp2 tini \
    busybox-static skopeo umoci docker-registry libnftables1 >/dev/null

python3 -c 'import sys; assert sys.version_info >= (3, 11), "composer needs Python 3.11 or newer"'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
.venv/bin/python -m compileall -q composer engine  # an editable install is not byte-compiled
gcc -O2 -static -Wall -o engine/container/composer-shim \
    engine/container/shim.c engine/container/init.c engine/container/spec.c engine/container/plumb.c

# `composer` on the PATH, unless something else already owns that name.
target=/usr/local/bin/composer
if [ ! -e "$target" ] || [ "$(readlink "$target")" = "$PWD/.venv/bin/composer" ]; then
    ln -sf "$PWD/.venv/bin/composer" "$target"
fi

if [ "${1:-}" != "--no-example" ]; then
    echo "composer is installed. The example stack, validated and normalised:"
    .venv/bin/composer config examples/web/compose.yaml
    echo "Its image, busybox:local, made from Debian's busybox-static:"
    PATH="$PWD/.venv/bin:$PATH" examples/busybox-image.sh >/dev/null
    .venv/bin/composer image ls
    echo "The stack, up (stop it with: composer down examples/web/compose.yaml):"
    if .venv/bin/composer up -d --wait --wait-timeout 60 --progress plain examples/web/compose.yaml; then
        .venv/bin/composer ps examples/web/compose.yaml
        echo "Its page, through the published port 127.0.0.1:8080:"
        .venv/bin/python - <<'PY'
import time, urllib.request
for attempt in range(50):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2).read().decode(), end="")
        break
    except OSError:
        time.sleep(0.1)
PY
    else
        echo "the example stack did not come up: see the error above" >&2
    fi
fi
