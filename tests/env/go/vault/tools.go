//go:build tools

// Package tools pins the HashiCorp Vault server this wrapper module builds.
package tools

import _ "github.com/hashicorp/vault"
