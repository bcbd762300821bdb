"""The board's Celery jobs (imported when Celery is installed). A job runs
in the tenant that sent it: tenantry carries the tenant in the message (or,
run eagerly, takes the caller's) and refuses a header naming another one
(docs/jobs.md)."""

from celery import shared_task

from .imports import add_items


@shared_task
def import_items_job(names: list[str]) -> list[str]:
    return add_items(names)
