#!/usr/bin/env bash
# Prints 1 when the Docker engine refuses `docker run --privileged` for want of capabilities
# (as on the build machines, whose capability bounding set lacks CAP_SYS_RESOURCE: "unable to
# apply caps"), 0 otherwise. The kind docker shim (tests/env/kindnode/shim/docker) rewrites
# --privileged only on 1.
DOCKER=${1:-/usr/bin/docker}
if "$DOCKER" run --rm --privileged --network none --entrypoint /bin/true \
    debian:bookworm-slim 2>&1 | grep -q "apply caps"; then
    echo 1
else
    echo 0
fi
