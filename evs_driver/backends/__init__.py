"""Storage backends, loaded by name from the ``evs_driver.backends`` entry points."""
