"""The ``rbd`` backend: volumes as RBD images on a shared Ceph cluster (librbd, clone v2).

``backend`` holds the policy (which librbd calls make each Backend operation); ``cluster`` the
connection, timeouts and error translation; ``naming`` image and snapshot names and the
snapshot index; ``device`` the data path; ``usage`` space figures; ``manage`` adoption of
existing images. Nothing imports librados/librbd until ``setup()`` runs.
"""

from evs_driver.backends.rbd.backend import RbdBackend

__all__ = ["RbdBackend"]
