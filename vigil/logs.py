"""Structured JSON logs for every component.

One JSON object per line on stderr, so log shippers need no parsing rules. Pass context as ``extra``
(``log.info("spooled", extra={"records": 12})``); never pass settings objects or secrets.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def dict_config(level: str = "INFO") -> dict[str, Any]:
    """The logging configuration as a :func:`logging.config.dictConfig` mapping.

    Faust's worker (through mode) configures logging itself when it starts; handing it this mapping keeps
    its lines in the same JSON form as everyone else's.
    """
    quiet = max(logging.WARNING, logging.getLevelName(level.upper()))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"level": quiet} for name in ("aiokafka", "kafka", "faust", "mode", "urllib3")},
    }


def configure(level: str = "INFO") -> None:
    """Route all logging to stderr as JSON lines (idempotent)."""
    logging.config.dictConfig(dict_config(level))
