"""Tests proving the test cluster is a real Kubernetes, not a stand-in."""
