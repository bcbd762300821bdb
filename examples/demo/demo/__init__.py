try:  # Celery is optional (requirements/demo.txt does not install it)
    from .celery import app as celery_app
except ImportError:
    celery_app = None

__all__ = ["celery_app"]
