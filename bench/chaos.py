"""Chaos benchmark: N jobs through real workers while workers are killed, Redis and PostgreSQL
restart and the FHIR server answers 503 — then count what was done, lost and written twice.

    python bench/chaos.py [--jobs 40] [--workers 2] [--kills 1] [--broker-restarts 1]
                          [--db-restarts 1] [--fhir-bursts 1] [--every 15] [--json]

Everything is real and local: a throwaway Redis (AOF on), a throwaway PostgreSQL cluster holding
the job store and the audit store, the sekmet FHIR server behind a fault-injecting proxy, and
`photomarker worker` processes with the shipped lease and heartbeat settings (the models run with
TTA and heat maps off, to keep the CPU on the chaos). A killed worker is replaced at once, as
compose or systemd would. Faults come one every ``--every`` seconds once the first job is done;
the photos are submitted in waves, one before the first fault and one right after each, so every
fault meets work to do.

Printed: jobs done / failed / lost (not finished by the deadline), Observations written twice,
and for each fault its recovery time — seconds from the fault's end until the next job finished
(for a kill: until every job the dead worker held was finished by another).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugin.settings import Settings  # noqa: E402
from tests.fhir_server import running_fhir_server  # noqa: E402
from tests.postgres import ThrowawayCluster, _binaries, throwaway_cluster  # noqa: E402
from tests.redis_server import running_redis_server  # noqa: E402
from tests.workers.conftest import Stack  # noqa: E402
from tests.workers.fhir_proxy import running_proxy  # noqa: E402
from workers.job_records import Job  # noqa: E402

PRODUCTION = ("job_lease_s", "worker_heartbeat_s", "broker_visibility_timeout_s", "broker_restore_interval_s")


@dataclass
class Fault:
    kind: str
    at_s: float  # since the first job was submitted
    ended_s: float = 0.0
    ended_at: float = 0.0  # Unix time, comparable with the job store's finished_at
    recovered_s: float | None = None  # seconds from its end until work went on (see module doc)
    detail: dict[str, Any] = field(default_factory=dict)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--broker-restarts", type=int, default=1)
    parser.add_argument("--db-restarts", type=int, default=1)
    parser.add_argument("--fhir-bursts", type=int, default=1)
    parser.add_argument("--down-s", type=float, default=3.0, help="how long Redis / PostgreSQL stay down")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between faults")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds for all jobs to finish")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def schedule(args: argparse.Namespace) -> list[str]:
    """Faults interleaved: kill, broker, db, fhir, kill, … until each count is used up."""
    left = {
        "kill": args.kills,
        "broker": args.broker_restarts,
        "db": args.db_restarts,
        "fhir": args.fhir_bursts,
    }
    order: list[str] = []
    while any(left.values()):
        for kind in ("kill", "broker", "db", "fhir"):
            if left[kind]:
                order.append(kind)
                left[kind] -= 1
    return order


class Chaos:
    def __init__(self, stack: Stack, cluster: ThrowawayCluster, args: argparse.Namespace) -> None:
        self.stack = stack
        self.cluster = cluster
        self.args = args
        self.started = time.monotonic()
        self.faults: list[Fault] = []

    def now(self) -> float:
        return time.monotonic() - self.started

    def jobs(self, ids: list[str]) -> list[Job] | None:
        """The jobs as stored, or None while the job store is down."""
        try:
            return [self.stack.job(job_id) for job_id in ids]
        except Exception:
            return None

    def inject(self, kind: str, ids: list[str]) -> Fault:
        fault = Fault(kind, self.now())
        if kind == "kill":
            held = [j for j in self.jobs(ids) or [] if j.status == "running" and j.worker]
            victim_name = held[0].worker if held else None
            victim = next(
                (w for w in self.stack.workers if victim_name and victim_name.endswith(f":{w.pid}")),
                self.stack.workers[0],
            )
            fault.detail = {"victim_pid": victim.pid, "held": [j.id for j in held if j.worker == victim_name]}
            victim.kill9()
            self.stack.workers.remove(victim)
            self.stack.start_worker()  # the supervisor's part
        elif kind == "broker":
            self.stack.redis.restart(down_for=self.args.down_s)
        elif kind == "db":
            self.cluster.restart(down_for=self.args.down_s)
        elif kind == "fhir":
            fault.detail = {"refused_posts": 10}
            self.stack.proxy.fail_next(10, method="POST", status=503, retry_after="1")
        fault.ended_s, fault.ended_at = self.now(), time.time()
        self.faults.append(fault)
        return fault

    def run(self, refs: list[str]) -> list[Job]:
        """Submit the photos in waves, one before the first fault and one after each, so that
        every fault meets work still to do; inject the faults; wait for every job to end."""
        pending = schedule(self.args)
        waves = [refs[i :: len(pending) + 1] for i in range(len(pending) + 1)]
        ids = [self.stack.submit({"reference": ref}) for ref in waves.pop(0)]
        next_fault_at: float | None = None
        deadline = self.started + self.args.deadline
        jobs: list[Job] = []
        while time.monotonic() < deadline:
            seen = self.jobs(ids)
            if seen is not None:
                jobs = seen
                self.note_recoveries(jobs)
                if all(job.finished for job in jobs) and not pending:
                    break
                if next_fault_at is None and any(job.finished for job in jobs):
                    next_fault_at = self.now()
            if pending and next_fault_at is not None and self.now() >= next_fault_at:
                self.inject(pending.pop(0), ids)
                ids += [self.stack.submit({"reference": ref}) for ref in waves.pop(0)]
                next_fault_at = self.now() + self.args.every
            time.sleep(0.2)
        return jobs

    def note_recoveries(self, jobs: list[Job]) -> None:
        finished_at = [job.finished_at for job in jobs if job.finished_at is not None]
        for fault in self.faults:
            if fault.recovered_s is not None:
                continue
            ended_wall = fault.ended_at
            if fault.kind == "kill":
                held = {j.id: j for j in jobs if j.id in fault.detail["held"]}
                if held and not all(j.finished for j in held.values()):
                    continue
                last = max((j.finished_at or 0.0 for j in held.values()), default=ended_wall)
                fault.recovered_s = round(max(0.0, last - ended_wall), 1)
            else:
                after = [t for t in finished_at if t > ended_wall]
                if after:
                    fault.recovered_s = round(min(after) - ended_wall, 1)


def main() -> None:
    args = parse()
    bindir = _binaries()
    if bindir is None:
        raise SystemExit("chaos: PostgreSQL binaries are needed (apt-get install postgresql)")
    with ExitStack() as stack_of, TemporaryDirectory(prefix="photomarker-chaos-") as tmp:
        work = Path(tmp)
        for part in ("redis", "fhir", "stack"):
            (work / part).mkdir()
        redis = stack_of.enter_context(running_redis_server(work / "redis"))
        cluster = stack_of.enter_context(throwaway_cluster(bindir))
        fhir = stack_of.enter_context(running_fhir_server(work / "fhir"))
        proxy = stack_of.enter_context(running_proxy(fhir))
        overrides = {name: str(Settings.model_fields[name].default) for name in PRODUCTION}
        overrides |= {"jobs_database_url": cluster.url, "audit_database_url": cluster.url}
        stack = Stack(work / "stack", redis, proxy, fhir, overrides)
        stack_of.callback(stack.stop)
        for _ in range(args.workers):
            stack.start_worker()
        for worker in stack.workers:
            worker.wait_ready()

        patient = stack.new_patient()
        media = stack.new_media(patient, range(10_000, 10_000 + args.jobs))
        chaos = Chaos(stack, cluster, args)
        jobs = chaos.run(media)
        elapsed = chaos.now()

        observations = stack.observations(patient)
        identifiers = Counter(o["identifier"][0]["value"] for o in observations)
        statuses = Counter(job.status for job in jobs)
        report = {
            "jobs": args.jobs,
            "workers": args.workers,
            "done": statuses.get("done", 0),
            "failed": statuses.get("failed", 0),
            "lost": sum(not job.finished for job in jobs),
            "duplicated_observations": sum(n - 1 for n in identifiers.values() if n > 1),
            "workers_alive_at_end": sum(w.alive for w in stack.workers),
            "seconds": round(elapsed, 1),
            "faults": [asdict(fault) for fault in chaos.faults],
            "failures": sorted({f"{job.error_code}" for job in jobs if job.status == "failed"}),
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['jobs']} jobs, {report['workers']} workers, {report['seconds']} s")
    print(
        f"done {report['done']}  failed {report['failed']}  lost {report['lost']}  "
        f"duplicated Observations {report['duplicated_observations']}  "
        f"workers alive at the end {report['workers_alive_at_end']}/{args.workers}"
    )
    for fault in report["faults"]:
        recovered = "never" if fault["recovered_s"] is None else f"{fault['recovered_s']} s"
        print(f"  {fault['kind']:<7} at {fault['at_s']:6.1f} s  recovered after {recovered}")
    if report["failures"]:
        print("failure codes:", ", ".join(report["failures"]))


if __name__ == "__main__":
    main()
