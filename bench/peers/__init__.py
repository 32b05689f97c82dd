"""The peers vaultsync is measured against, built from the Go module proxy like the test servers."""
