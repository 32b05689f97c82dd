// Command coredns is CoreDNS v1.14.3 with only the plugins a kind cluster's Corefile uses.
//
// Stock coredns links every in-tree plugin, among them the AWS, Azure and Google Cloud DNS
// providers and the Datadog tracer: compiling those took most of the node image's cold build.
// kubeadm's Corefile (which kind keeps) needs errors, health, ready, kubernetes, prometheus,
// forward, cache, loop, reload and loadbalance; log and whoami are kept for debugging a node.
// coremain and the plugins are upstream's packages, unchanged: this file replaces only
// upstream's generated core/plugin import list (docs/testenv.md).
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
