#!/usr/bin/env bash
# Prints 1 when the Docker engine refuses `docker run --privileged` (as on the build
# machines, whose capability bounding set lacks CAP_SYS_RESOURCE), 0 when it allows it.
# The kind docker shim (tests/env/kindnode/shim/docker) rewrites --privileged only on 1.
DOCKER=${1:-/usr/bin/docker}
if "$DOCKER" run --rm --privileged --network none --entrypoint /bin/true \
    debian:bookworm-slim >/dev/null 2>&1; then
    echo 0
else
    echo 1
fi
