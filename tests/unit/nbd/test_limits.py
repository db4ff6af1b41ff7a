"""Limits and Slots: what a server may spend, checked when it is set up."""

import threading

import pytest

from evs_driver import exception
from evs_driver.nbd import Limits, Slots


@pytest.mark.parametrize(
    "limits, message",
    [
        (dict(max_connections=0), "max_connections must be at least 1"),
        (dict(max_connections_per_export=0), "max_connections_per_export must be at least 1"),
        (dict(max_bytes_in_flight=4096), "max_bytes_in_flight must be at least 65536"),
        (dict(handshake_timeout=0), "handshake_timeout must be positive"),
        (dict(io_timeout=0), "io_timeout must be positive"),
        (dict(max_connections=0, io_timeout=-1), "max_connections.*; io_timeout"),
    ],
)
def test_bad_limits_are_refused(limits, message):
    with pytest.raises(exception.InvalidInput, match=message):
        Limits(**limits)


def test_no_io_timeout_is_allowed():
    assert Limits(io_timeout=None).io_timeout is None


def test_slots_count_up_to_the_maximum_across_threads():
    slots = Slots(50)
    taken = []
    threads = [threading.Thread(target=lambda: taken.append(slots.take())) for _ in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 50 and slots.used == 50
    slots.give_back()
    assert slots.take() and not slots.take()
