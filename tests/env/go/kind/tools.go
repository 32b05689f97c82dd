//go:build tools

// Package tools pins the commands the kind node image is built from.
package tools

import (
	_ "sigs.k8s.io/kind"
)
