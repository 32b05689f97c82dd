module vaultsync.local/kind-app

go 1.26.0
