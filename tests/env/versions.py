"""Every version the test environment pins, in one place.

The Go wrapper modules under `tests/env/go/` require the same versions; the builder refuses
to build when a go.mod disagrees with this file, so the two cannot drift apart silently.
"""

from typing import Final

KUBERNETES: Final = "v1.36.3"
# Kubernetes publishes its staging modules (k8s.io/api, client-go, ...) as v0.<minor>.<patch>.
KUBERNETES_STAGING: Final = "v0.36.3"
ETCD: Final = "v3.6.16"
KWOK: Final = "v0.8.0"
HELM: Final = "v3.21.4"
# promtool checks the chart's alert rules; Prometheus 3.x is published as module v0.3xx.
PROMETHEUS: Final = "v0.316.0"
# The Lua interpreter (Lua 5.1, as Argo CD's gopher-lua) the Argo CD health checks are tested with.
LUPA: Final = "2.8"
# The fault proxy tests/chaos puts in front of moto and OpenBao.
TOXIPROXY: Final = "v2.5.0"

# Stamped into the Kubernetes binaries so that /version reports a real, reproducible build.
KUBERNETES_BUILD_DATE: Final = "2026-01-01T00:00:00Z"

# The kind node image (tests/env/kindnode.py, docs/testenv.md): the node runs the same
# Kubernetes as the local control plane; the rest is what kind v0.33.0's own base image pins,
# at the release the module proxy serves.
KIND: Final = "v0.33.0"
CONTAINERD: Final = "v2.4.2"
CNI_PLUGINS: Final = "v1.10.0"
CRI_TOOLS: Final = "v1.37.0"
# kubeadm v1.36 names coredns v1.14.2, which the proxy does not serve; v1.14.3 is its patch.
COREDNS: Final = "v1.14.3"
LOCAL_PATH_PROVISIONER: Final = "v0.0.30"
# build/pause/linux/pause.c from the Kubernetes module, compiled as kubeadm's pause image.
PAUSE: Final = "3.10.2"
# Debian release the node image (and the operator image) is bootstrapped from.
DEBIAN_SUITE: Final = "bookworm"
