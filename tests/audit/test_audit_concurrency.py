"""Many writers at once — threads in one process and separate processes — still make one linear chain."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from audit.store import AuditStore
from tests.audit.tampering import MakeRecord

# A separate Python process appending through its own AuditStore (and its own migration attempt).
_WRITER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from audit.record import AuditAction, AuditRecord
from audit.store import AuditStore

url, name, count, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
with AuditStore.from_url(url) as store:
    (gate / name).touch()
    while not (gate / "go").exists():
        time.sleep(0.005)
    for n in range(count):
        store.append(AuditRecord(event="photo.read", action=AuditAction.READ,
                                 recorded=datetime.now(UTC), agent_who=name, query=str(n)))
        # Real writers pause between events; back to back, SQLite's busy back-off lets one
        # process take the lock again and again and the others would barely interleave.
        time.sleep(0.002)
"""


def _assert_one_chain(store: AuditStore, writers: dict[str, int]) -> None:
    """Gap-free, verified, everyone's events present, and the writers really did interleave."""
    result = store.verify()
    assert result.ok, result.describe()
    total = sum(writers.values())
    assert result.checked == result.head_seq == total
    events = list(store.iter_events())
    assert [event.seq for event in events] == list(range(1, total + 1))
    assert Counter(event.record.agent_who for event in events) == writers
    # Each writer's own events keep the order it appended them in.
    for name in writers:
        mine = [int(e.record.query or "") for e in events if e.record.agent_who == name]
        assert mine == sorted(mine)
    switches = sum(a.record.agent_who != b.record.agent_who for a, b in itertools.pairwise(events))
    assert switches >= len(writers), "the writers ran one after another; nothing was tested"


def test_threads_append_one_linear_chain(store: AuditStore, make_record: MakeRecord) -> None:
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def write(name: str) -> None:
        try:
            start.wait()
            for n in range(per_thread):
                store.append(make_record(n, agent_who=name, query=str(n)))
                # Yield between appends so the writers really interleave even on a busy machine.
                time.sleep(0.001)
        except BaseException as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(f"thread:{i}",)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    _assert_one_chain(store, {f"thread:{i}": per_thread for i in range(threads)})


def test_processes_append_one_linear_chain(db_url: str, tmp_path: Path) -> None:
    processes, per_process = 4, 40
    gate = tmp_path / "gate"
    gate.mkdir()
    # Every process opens an unmigrated database at once: the migration must happen once.
    running = [
        subprocess.Popen([sys.executable, "-c", _WRITER, db_url, f"process:{i}", str(per_process), str(gate)])
        for i in range(processes)
    ]
    deadline = time.monotonic() + 60
    while len(list(gate.iterdir())) < processes:
        assert all(process.poll() is None for process in running), "a writer died before starting"
        assert time.monotonic() < deadline, "writers did not get ready"
        time.sleep(0.01)
    (gate / "go").touch()
    for process in running:
        assert process.wait(timeout=120) == 0
    with AuditStore.from_url(db_url) as store:
        _assert_one_chain(store, {f"process:{i}": per_process for i in range(processes)})
