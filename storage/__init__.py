"""Storage: vigil's events and alerts in ClickHouse, where SOC analysts query them.

:mod:`storage.clickhouse` is the only code that talks to ClickHouse (client, inserts, queries);
:mod:`storage.schema` holds the tables as numbered migrations; :mod:`storage.writer` moves the ``events``
and ``alerts`` topics into those tables (``vigil store``), committing Kafka offsets only after ClickHouse
acknowledged the rows; :mod:`storage.cli` adds ``vigil store``, ``vigil storage migrate|status`` and
``vigil query``.
"""
