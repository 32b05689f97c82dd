"""The local test environment: real servers built from the registries, cached, and started.

Nothing here is a fake: `tools` builds Kubernetes, etcd, kwok and helm from the Go module
proxy, and `cluster` runs them as a kwokctl cluster that the end-to-end tests talk to.
"""
