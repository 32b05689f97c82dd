//go:build tools

// Package tools pins the External Secrets Operator controller this wrapper module builds.
package tools

import (
	_ "github.com/external-secrets/external-secrets"
)
