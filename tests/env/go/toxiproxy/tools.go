//go:build tools

// Package tools pins the Toxiproxy server this wrapper module builds (tests/chaos puts it
// in front of moto and OpenBao).
package tools

import _ "github.com/Shopify/toxiproxy/v2/cmd/server"
