"""Command line for the test environment, used by `make tools|cluster-up|cluster-down`.

python -m tests.env tools    build (or reuse) every pinned binary
python -m tests.env up       start or reuse the local cluster; prints its kubeconfig
python -m tests.env down     delete the cluster and stop its processes
python -m tests.env status   say whether the cluster runs, its version and nodes
"""

import argparse
import sys

from tests.env import cluster, tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.env", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("tools", "up", "down", "status"))
    command = parser.parse_args(argv).command
    try:
        if command == "tools":
            tools.ensure_all()
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
