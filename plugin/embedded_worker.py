"""``photomarker serve``'s embedded worker: a child process, restarted whenever it dies.

The worker runs in a clean interpreter (not a fork of the web process, and no multiprocessing
bookkeeping for gunicorn's forked workers to trip over) and reads the same environment. A worker
ends on its own only when something it cannot ride out happened (a broker outage past
``PHOTOMARKER_BROKER_OUTAGE_LIMIT_S``, a crash): on one machine there is no compose or systemd
to restart it, so :class:`EmbeddedWorker` does, with backoff, and says so once per restart.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

from plugin.settings import load_settings
from plugin.worker_main import run_worker
from workers.celery_app import QUEUES

log = logging.getLogger(__name__)

# Seconds between restarts of a worker that keeps dying: doubled each time, up to the cap.
_FIRST_RESTART_S, _LONGEST_RESTART_S = 1.0, 30.0
# A worker that lived this long was healthy: the next restart starts the backoff afresh.
_HEALTHY_AFTER_S = 60.0


class EmbeddedWorker:
    """Start ``python -m plugin.embedded_worker CONCURRENCY`` and keep it running until :meth:`stop`."""

    def __init__(self, concurrency: int) -> None:
        self._argv = [sys.executable, "-m", "plugin.embedded_worker", str(concurrency)]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="embedded-worker-watch", daemon=True)
        self._watcher.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._argv)  # noqa: S603  (our own interpreter and module, no user input)

    def _watch(self) -> None:
        wait = _FIRST_RESTART_S
        while not self._stopping.is_set():
            process = self._process
            try:
                status = process.wait(timeout=_HEALTHY_AFTER_S)
            except subprocess.TimeoutExpired:
                wait = _FIRST_RESTART_S  # alive and well for a while: forget earlier trouble
                continue
            if self._stopping.is_set():
                return
            log.warning("embedded worker (pid %s) exited with status %s; restarting in %.0f s",
                        process.pid, status, wait)  # fmt: skip
            if self._stopping.wait(wait):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._process = self._spawn()
            log.info("embedded worker restarted (pid %s)", self._process.pid)
            wait = min(wait * 2, _LONGEST_RESTART_S)

    def stop(self, timeout: float = 60) -> None:
        """Celery's warm shutdown (the running job finishes), then a kill if it takes too long."""
        with self._lock:
            self._stopping.set()
            process = self._process
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(concurrency: int) -> None:
    """The child's side: one worker on every queue, solo when it runs one job at a time."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pool = "solo" if concurrency == 1 else "prefork"
    run_worker(settings, list(QUEUES), concurrency=concurrency, pool=pool, hostname="photomarker-embedded@%h")


if __name__ == "__main__":  # python -m plugin.embedded_worker CONCURRENCY
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
