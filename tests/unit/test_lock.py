"""One run per inventory: the lock refuses a second holder, names the first, and dies with its process."""

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from toolkit.errors import LockHeldError
from toolkit.exit_codes import ExitCode
from toolkit.runner.lock import InventoryLock

REPO = Path(__file__).resolve().parents[2]
KEY = "/srv/inventories/prod"

# A separate process that takes the lock, says so, then waits (for stdin to close) or dies without releasing.
HOLDER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from toolkit.runner.lock import InventoryLock
    lock = InventoryLock(Path(sys.argv[1]), sys.argv[2], "converge site --check")
    lock.acquire()
    print("held", flush=True)
    if sys.argv[3] == "crash":
        os._exit(3)  # no release, no cleanup: like a SIGKILL'd run
    sys.stdin.read()
    """
)


def holder(locks: Path, mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(locks), KEY, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


@pytest.fixture
def locks(tmp_path: Path) -> Path:
    return tmp_path / "locks"


def test_a_second_lock_on_the_same_inventory_is_refused_naming_the_holder(locks: Path) -> None:
    first = InventoryLock(locks, KEY, "converge base")
    first.acquire()
    try:
        with pytest.raises(LockHeldError) as raised:
            InventoryLock(locks, KEY, "drift base").acquire()
    finally:
        first.release()
    error = raised.value
    assert error.exit_code == ExitCode.LOCK_HELD
    assert int(error.exit_code) == 5
    assert f"inventory {KEY} is locked by pid {os.getpid()}" in error.message
    assert "(converge base, started " in error.message
    assert re.search(r"started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", error.message)
    assert error.hint is not None


def test_a_released_lock_can_be_taken_again(locks: Path) -> None:
    with InventoryLock(locks, KEY, "converge base"):
        pass
    with InventoryLock(locks, KEY, "converge base") as again:
        assert again.path.exists()


def test_the_lock_is_released_when_the_run_raises(locks: Path) -> None:
    with pytest.raises(RuntimeError), InventoryLock(locks, KEY, "converge base"):
        raise RuntimeError("boom")
    InventoryLock(locks, KEY, "converge base").acquire()


def test_different_inventories_do_not_block_each_other(locks: Path) -> None:
    with InventoryLock(locks, KEY, "converge base"), InventoryLock(locks, "/srv/inventories/lab", "converge base"):
        pass


def test_another_process_holding_the_lock_is_named(locks: Path) -> None:
    process = holder(locks, "wait")
    try:
        with pytest.raises(LockHeldError) as raised:
            InventoryLock(locks, KEY, "converge base").acquire()
        assert f"pid {process.pid} " in raised.value.message
        assert "converge site --check" in raised.value.message
    finally:
        process.kill()
        process.communicate()
    # Killed without releasing: the kernel dropped the flock with the process.
    InventoryLock(locks, KEY, "converge base").acquire()


def test_a_lock_whose_holder_crashed_is_free(locks: Path) -> None:
    process = holder(locks, "crash")
    assert process.wait(timeout=10) == 3
    lock = InventoryLock(locks, KEY, "converge base")
    # The dead holder's description is still in the file; it must not matter.
    assert str(process.pid) in lock.path.read_text()
    lock.acquire()
    lock.release()


def test_a_run_that_may_wait_gets_the_lock_when_the_holder_finishes(locks: Path) -> None:
    process = holder(locks, "wait")
    threading.Timer(1.0, process.kill).start()  # the holder's run ends a second from now
    started = time.monotonic()
    with InventoryLock(locks, KEY, "converge postgresql", wait=30) as lock:
        waited = time.monotonic() - started
        assert json.loads(lock.path.read_text())["command"] == "converge postgresql"
    process.communicate()
    assert 0.5 < waited < 30


def test_a_run_that_waited_its_whole_timeout_is_refused_saying_so(locks: Path) -> None:
    process = holder(locks, "wait")
    try:
        started = time.monotonic()
        with pytest.raises(LockHeldError) as raised:
            InventoryLock(locks, KEY, "converge base", wait=1.2).acquire()
        assert time.monotonic() - started >= 1.2
        assert raised.value.message.endswith("(waited 1 s)")
        assert f"pid {process.pid} " in raised.value.message
    finally:
        process.kill()
        process.communicate()
