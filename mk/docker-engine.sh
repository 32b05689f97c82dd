#!/usr/bin/env bash
# Brings up what `make image` needs on a machine where nothing is prepared and
# no container registry can be reached:
#
#   docker-engine.sh engine   a Docker engine that answers (Debian's docker.io,
#                             dockerd started in the background when not running)
#   docker-engine.sh base     the debian:bookworm-slim base image, made locally
#                             with debootstrap + docker import when it is missing
#
# Debian's client (/usr/bin/docker) is used on purpose: a newer client found
# first on PATH may insist on the buildx plugin, which bookworm does not package.
set -euo pipefail

DOCKER=${DOCKER:-/usr/bin/docker}
# A bare name (DOCKER=docker) means the client found on PATH.
DOCKER=$(command -v "$DOCKER" || echo "$DOCKER")
CACHE=${CACHE:-$HOME/.cache/vaultsync}
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

log() { echo "docker-engine: $*" >&2; }

apt_install() {
    log "installing $* with apt-get"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to apt-get install $*; install it by hand or rerun as root"
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1; }

engine() {
    engine_answers && return 0
    if [ ! -x "$DOCKER" ] || ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io
    fi
    engine_answers && return 0
    mkdir -p "$CACHE"
    log "starting dockerd (log: $CACHE/dockerd.log)"
    # setsid: the daemon outlives make and is not killed with its process group.
    # The system PATH, not make's: dockerd's containerd looks its runc shim up on PATH, and
    # $CACHE/bin/current must never shadow the one Debian's containerd speaks to.
    env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        setsid nohup dockerd >>"$CACHE/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        engine_answers && return 0
        sleep 1
    done
    log "dockerd did not answer within 60 s; last lines of $CACHE/dockerd.log:"
    tail -n 20 "$CACHE/dockerd.log" >&2
    exit 1
}

# The same trimming the official slim images do (debuerreotype's slimify): no
# docs, man pages or translations, now or in any package installed later.
write_slim_config() {
    local root=$1
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-no-recommends" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
}

base() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    local root="$CACHE/rootfs-$SUITE"
    rm -rf "$root"
    log "making $BASE_IMAGE with debootstrap (about a minute)"
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    write_slim_config "$root"
    find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* \
        "$root"/var/log/* "$root"/tmp/*
    tar --numeric-owner -C "$root" -c . \
        | "$DOCKER" import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    log "made $BASE_IMAGE ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE") bytes)"
}

case "${1:-}" in
    engine) engine ;;
    base) engine && base ;;
    *) echo "usage: $0 engine|base" >&2; exit 2 ;;
esac
