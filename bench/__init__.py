"""The vaultsync benchmark: load on a local cluster, vaultsync and its peers, recorded figures."""
