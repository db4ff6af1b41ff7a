"""Attaching volumes to hosts: kernel block devices, iSCSI and NVMe/TCP targets, records."""
