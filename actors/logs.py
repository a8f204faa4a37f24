"""loguru set up once per process, with the order id and stage on every line."""

from __future__ import annotations

import sys

from loguru import logger

LOG_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[stage]}</cyan> <magenta>{extra[order_id]}</magenta> | {message}"
)


def configure_logging(level: str) -> None:
    """Replace loguru's default sink; every actor process calls this once in its constructor."""
    logger.remove()
    logger.configure(extra={"stage": "-", "order_id": "-"})
    logger.add(sys.stderr, level=level.upper(), format=LOG_FORMAT, enqueue=False, backtrace=False)
