"""The ``evs-volume`` service: owns the pools, serves NBD exports, answers ``evs`` requests.

Modules: ``protocol`` (JSON lines on the control socket), ``control`` (the socket server),
``exporter`` (the NBD exporter the drivers attach through), ``imageio`` (qemu-img against
an export) and ``service`` (the process: start, dispatch, clean stop).
"""
