#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine: the Rust toolchain's
# rustfmt and clippy, FUSE (the lose-unsynced layer), psmisc (`fuser`, run by
# a stale-lock runbook), iproute2 and iptables (network namespaces and
# partitions), a Docker engine and a compose CLI for container targets, and
# mmdebstrap for Debian-based images (the tests build their images
# themselves: nothing is pulled), Chromium, in which a test opens the HTML
# report headless, Redis (server and redis-check-aof) for the Redis pack,
# PostgreSQL (run as the postgres user through setpriv) for the
# PostgreSQL and sequencer packs, MariaDB (run as the mysql user) for the
# MariaDB pack, etcd (three members in namespaces) for the etcd pack,
# libfaketime for the clock fault, stress-ng for the hog fault, OpenSSH
# (server and client: the remote hosts of the tests are namespaces with an
# sshd each), kubectl (the independent client that checks the tests' fake
# Kubernetes API server), busybox-static (the shell in the image of the pods
# that take signals through exec), and python3 for ci/code-shape.py (the code-shape test) and
# the example and fixture services of the http and command workloads.
# SQLite is linked into crashlab itself.
set -euo pipefail
command -v cargo >/dev/null || { echo "ci/install-deps.sh: cargo is required" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

missing=()
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v fuser >/dev/null || missing+=(psmisc)
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-check-aof >/dev/null || missing+=(redis-tools)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
command -v mariadbd >/dev/null || missing+=(mariadb-server)
command -v etcd >/dev/null || missing+=(etcd-server)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
command -v stress-ng >/dev/null || missing+=(stress-ng)
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v kubectl >/dev/null || missing+=(kubectl)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "ci/install-deps.sh: please install: ${missing[*]}" >&2
    fi
fi
# Container targets: the engine must answer (it runs on these machines).
if ! docker version >/dev/null 2>&1; then
    if command -v dockerd >/dev/null && [ "$(id -u)" = 0 ]; then
        (dockerd >/tmp/dockerd.log 2>&1 &)
        for _ in $(seq 1 30); do docker version >/dev/null 2>&1 && break; sleep 1; done
    fi
    docker version >/dev/null 2>&1 || echo "ci/install-deps.sh: no Docker engine answers; container tests will fail" >&2
fi
# The FUSE device may be absent in a fresh container; the kernel has FUSE.
if [ ! -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
    mknod -m 666 /dev/fuse c 10 229 || true
fi
