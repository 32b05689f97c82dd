module vaultsync.local/bench/peers/eso

go 1.26.0

require github.com/external-secrets/external-secrets v0.16.2

// Copied from upstream's go.mod: replace directives of a dependency are ignored, so the
// wrapper must repeat them for the build to match upstream's.
replace github.com/Masterminds/sprig/v3 => github.com/external-secrets/sprig/v3 v3.3.0
