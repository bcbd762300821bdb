"""The demo's Celery app (used when Celery is installed). The demo runs no
broker or worker: ``CELERY_TASK_ALWAYS_EAGER`` runs every job in place, in
the process that sends it (settings.py)."""

from celery import Celery

app = Celery("demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The default app of every thread, not only of the one that imported this:
# djust runs event handlers on asgiref's threads, where @shared_task would
# otherwise find a fresh default app (a broker on localhost, not eager).
app.set_default()
