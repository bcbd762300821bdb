"""A real Celery worker for the tests: ``celery -A tests.celery_app worker``
in a process of its own (its own session, so stopping it stops its pool's
children too), on the given Redis, with the worker's Django database in a
SQLite file that ``python -m tests.celery_worker setup`` migrates and seeds.

Seed: tenants ``t00``…``t49`` (tenant ``tNN`` has ``NN % 7 + 1`` notes),
``doomed``, an inactive tenant, and ``gone``, created and deleted (so the
worker never saw it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENANTS = [f"t{i:02d}" for i in range(50)]
#: A deactivated tenant: not in the registry, so no fan-out and no tasks.
INACTIVE = ["sleepy"]
#: Active, and deleted by a test once a task ran for it.
DOOMED = "doomed"


def notes_of(tenant_id: str) -> int:
    return int(tenant_id[1:]) % 7 + 1 if tenant_id in TENANTS else 1


def environment(redis_url: str, database: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings_celery",
        TENANTRY_TEST_DB="sqlite",  # the worker's database is always the SQLite file
        TENANTRY_CELERY_REDIS=redis_url,
        TENANTRY_CELERY_DB=str(database),
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def prepare_database(redis_url: str, database: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tests.celery_worker", "setup"],
        cwd=ROOT,
        env=environment(redis_url, database),
        check=True,
        timeout=300,
    )


class CeleryWorker:
    def __init__(self, redis_url: str, database: Path, log: Path, *, pool: str, concurrency: int):
        self.pool = pool
        self.log_path = log
        self.command = [
            sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=WARNING",
            f"--hostname={pool}@tenantry-tests",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.env = environment(redis_url, database)
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        log = open(self.log_path, "w")
        self._log = log
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # warm shutdown: the pool's children stop too
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # its own session: only its processes
                process.wait(timeout=10)
        self._log.close()


def _setup() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from tests.jobs.models import Note, Tenant

    call_command("migrate", verbosity=0)
    for tenant_id in [*TENANTS, *INACTIVE, DOOMED, "gone"]:
        Tenant.objects.create(
            slug=tenant_id, name=tenant_id.upper(), is_active=tenant_id not in INACTIVE
        )
        Note.all_tenants.bulk_create(
            Note(tenant_id=tenant_id, text=f"{tenant_id}-{n}") for n in range(notes_of(tenant_id))
        )
    Tenant.objects.filter(slug="gone").delete()


if __name__ == "__main__" and sys.argv[1:] == ["setup"]:
    _setup()
