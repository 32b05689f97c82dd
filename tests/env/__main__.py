"""Command line for the test environment, used by `make tools|cluster-up|cluster-down`.

python -m tests.env tools    build (or reuse) every pinned binary
python -m tests.env up       start or reuse the local cluster; prints its kubeconfig
python -m tests.env down     delete the cluster and stop its processes
python -m tests.env status   say whether the cluster runs, its version and nodes
python -m tests.env kind-node      build (or reuse) the kind node image; prints its tag last
python -m tests.env kind-node-tag  print the node image's tag (its content key) only
python -m tests.env kind-bin       build (or reuse) kind from sigs.k8s.io/kind
"""

import argparse
import sys

from tests.env import cluster, tools
from tests.env.kindnode import build as kindnode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.env", description=__doc__.split("\n")[0])
    parser.add_argument(
        "command", choices=("tools", "up", "down", "status", "kind-node", "kind-node-tag", "kind-bin")
    )
    command = parser.parse_args(argv).command
    try:
        if command == "tools":
            tools.ensure_all()
        elif command == "kind-node":
            print(kindnode.ensure_node_image())
        elif command == "kind-bin":
            tools.ensure_module(next(m for m in tools.NODE_MODULES if m.directory == "kind"))
        elif command == "kind-node-tag":
            print(kindnode.node_image_tag())
        elif command == "up":
            cluster.up()
        elif command == "down":
            cluster.down()
        else:
            state = cluster.status()
            print(f"{'running' if state.running else 'not running'}: {state.kubeconfig}")
            print(state.detail)
            return 0 if state.running else 1
    except (tools.BuildError, cluster.ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
