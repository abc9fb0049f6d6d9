"""The local development stack: real Apache Kafka and a real ClickHouse server on 127.0.0.1.

``vigil dev up | down | status`` on the command line; :func:`up`, :func:`down`, :func:`status` and
:func:`running` (a stack shared by concurrent test sessions) from Python. See :mod:`vigil.devstack.stack`
for how runs are tracked.
"""

from vigil.devstack.errors import DevStackError
from vigil.devstack.stack import ServiceStatus, down, run_dir, running, status, up

__all__ = ["DevStackError", "ServiceStatus", "down", "run_dir", "running", "status", "up"]
