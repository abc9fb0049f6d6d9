"""Storage: vigil's events and alerts in ClickHouse, where SOC analysts query them.

:mod:`vigil.storage.clickhouse` is the only code that talks to ClickHouse (client, inserts, queries, progress);
:mod:`vigil.storage.schema` holds the tables, rollups and roles as numbered migrations plus the retention;
:mod:`vigil.storage.writer` moves the ``events`` and ``alerts`` topics into those tables (``vigil store``),
committing Kafka offsets only after ClickHouse acknowledged the rows. For analysts: :mod:`vigil.storage.hunts`
(saved hunts, the TOML files in ``storage/hunts/``), :mod:`vigil.storage.sigma_sql` (Sigma retro-hunts),
:mod:`vigil.storage.alerts` (list, show, triage). :mod:`vigil.storage.cli` adds the commands; ``vigil bench store``
is :mod:`vigil.benchmarks.store`.
"""
