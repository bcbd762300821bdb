"""tenantry.logging.TenantFilter: record.tenant on every record, in views,
async tasks, with a queue, and with the LOGGING dict docs/logging.md shows."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
import logging.handlers
import queue

import pytest
from django.test import Client

from tenantry import tenant_context
from tenantry.logging import TenantFilter
from tests.demo_pieces import demo_results
from tests.doc_blocks import block_defining


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected():
    """Records of the ``tests.pieces`` logger, through a TenantFilter."""
    handler = Collect()
    handler.addFilter(TenantFilter())
    logger = logging.getLogger("tests.pieces")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)


def test_records_carry_the_bound_tenant_or_a_dash(collected):
    log = logging.getLogger("tests.pieces")
    log.info("outside")
    with tenant_context("acme"):
        log.info("inside")
        log.info("spoofed", extra={"tenant": "globex"})
    assert [(r.getMessage(), r.tenant) for r in collected] == [
        ("outside", "-"),
        ("inside", "acme"),
        ("spoofed", "acme"),
    ]


def test_a_views_log_lines_carry_the_requests_tenant(collected, db):
    response = Client().get("/pieces/logged/", HTTP_HOST="acme.example.com")
    assert response.status_code == 200
    assert [(r.getMessage(), r.tenant) for r in collected] == [("rendering the page", "acme")]


def test_concurrent_async_tasks_keep_their_own_tenant(collected):
    log = logging.getLogger("tests.pieces")

    async def work(tenant: str) -> None:
        with tenant_context(tenant):
            for i in range(3):
                await asyncio.sleep(0)
                log.info("%s step %d", tenant, i)

    async def main() -> None:
        await asyncio.gather(work("acme"), work("globex"))

    asyncio.run(main())
    assert len(collected) == 6
    assert all(r.getMessage().startswith(r.tenant) for r in collected)


def test_a_record_is_stamped_where_it_was_made_not_behind_a_queue():
    """The listener thread has no tenant bound: the QueueHandler's filter,
    which ran where the record was made, wins."""
    records: queue.Queue = queue.Queue()
    behind = Collect()
    behind.addFilter(TenantFilter())
    listener = logging.handlers.QueueListener(records, behind, respect_handler_level=False)
    front = logging.handlers.QueueHandler(records)
    front.addFilter(TenantFilter())
    logger = logging.getLogger("tests.pieces.queued")
    logger.addHandler(front)
    listener.start()
    try:
        with tenant_context("globex"):
            logger.warning("queued")
    finally:
        listener.stop()
        logger.removeHandler(front)
    assert [(r.getMessage(), r.tenant) for r in behind.records] == [("queued", "globex")]


def test_the_logging_dict_of_the_docs_works():
    namespace: dict = {}
    exec(block_defining("logging.md", "LOGGING"), namespace)
    config = namespace["LOGGING"]
    assert config.get("disable_existing_loggers") is False  # keeps Django's and ours
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)
        stream = io.StringIO()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(stream)
        log = logging.getLogger("myapp.views")
        log.warning("nobody")
        with tenant_context("acme"):
            log.warning("order placed")
        lines = stream.getvalue().splitlines()
        assert lines[0].endswith("[-] myapp.views: nobody"), lines
        assert lines[1].endswith("[acme] myapp.views: order placed"), lines
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_the_demos_log_lines_carry_the_tenant():
    _, log, _ = demo_results()
    lines = log.splitlines()
    assert any(line.endswith("[acme] board.views: logo uploaded (8 bytes)") for line in lines)
    assert any(line.endswith("[globex] board.views: logo uploaded (10 bytes)") for line in lines)
    refused = [line for line in lines if "tenantry.audit: admin.refused" in line]
    assert refused and "[acme]" in refused[0]
