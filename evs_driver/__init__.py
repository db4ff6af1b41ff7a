"""evs_driver: redirect-on-write disk snapshots behind a Cinder-style volume driver."""
