"""Pieces of the ``lvm_thin`` backend: command execution, report parsing, naming, devices."""
