"""The devices' reader-writer lock: readers share it, a writer holds it alone, and a waiting
writer goes before readers that come after it."""

import threading

from evs_driver.rowstore.rwlock import RWLock
from tests.unit.rowstore.conftest import wait_for


def _waiting(lock: RWLock) -> int:
    return len(lock._cond._waiters)  # threads blocked in the lock (CPython's Condition)


def test_readers_share_the_lock():
    lock, done = RWLock(), []

    def other_reader():
        with lock.read():
            done.append(1)

    with lock.read():
        other = threading.Thread(target=other_reader)
        other.start()
        other.join(30)
        assert done == [1]  # it got in while this thread reads


def test_a_waiting_writer_goes_before_later_readers_and_holds_the_lock_alone():
    lock, log, release = RWLock(), [], threading.Event()

    def first_reader():
        with lock.read():
            log.append("reader 1 in")
            assert release.wait(30)
            log.append("reader 1 out")

    def writer():
        with lock.write():
            log.append("writer in")
            log.append("writer out")

    def later_reader():
        with lock.read():
            log.append("reader 2 in")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    wait_for(lambda: log == ["reader 1 in"], "the first reader")
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    wait_for(lambda: _waiting(lock) == 1, "the writer to wait")
    threads.append(threading.Thread(target=later_reader))
    threads[2].start()
    wait_for(lambda: _waiting(lock) == 2, "the later reader to wait")
    release.set()
    for thread in threads:
        thread.join(30)
    assert log == ["reader 1 in", "reader 1 out", "writer in", "writer out", "reader 2 in"]


def test_writers_waiting_for_a_writer_each_get_in_when_it_leaves():
    lock, log, release = RWLock(), [], threading.Event()

    def first_writer():
        with lock.write():
            log.append("writer 1 in")
            assert release.wait(30)

    def later_writer(number: int):
        with lock.write():
            log.append(f"writer {number} in")

    first = threading.Thread(target=first_writer)
    first.start()
    wait_for(lambda: log == ["writer 1 in"], "the first writer")
    later = [threading.Thread(target=later_writer, args=(n,)) for n in (2, 3)]
    for thread in later:
        thread.start()
    wait_for(lambda: _waiting(lock) == 2, "both writers to wait")
    release.set()
    for thread in [first, *later]:
        thread.join(30)
        assert not thread.is_alive(), "a writer was never woken"
    assert sorted(log[1:]) == ["writer 2 in", "writer 3 in"]
