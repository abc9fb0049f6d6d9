"""Storage: vigil's events and alerts in ClickHouse, where SOC analysts query them.

:mod:`storage.clickhouse` is the only code that talks to ClickHouse (client, inserts, queries, progress);
:mod:`storage.schema` holds the tables, rollups and roles as numbered migrations plus the retention;
:mod:`storage.writer` moves the ``events`` and ``alerts`` topics into those tables (``vigil store``),
committing Kafka offsets only after ClickHouse acknowledged the rows. For analysts: :mod:`storage.hunts`
(saved hunts, the TOML files in ``storage/hunts/``), :mod:`storage.sigma_sql` (Sigma retro-hunts),
:mod:`storage.alerts` (list, show, triage). :mod:`storage.cli` adds the commands and :mod:`storage.bench`
``vigil bench store``.
"""
