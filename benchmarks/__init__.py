"""Benchmarks: ``vigil bench detect | e2e | soak | store | sensor``, each next to a raw baseline measured in the
same run (the soak instead watches the whole pipeline for growth over minutes).

They sit above every part they measure (the engine and stream processor, the whole pipeline, the storage writer,
the eBPF sensor), so they live in their own package rather than inside those parts: no runtime module imports
them, and :mod:`vigil.benchmarks.cli` imports a benchmark's module only when that benchmark runs.
:mod:`vigil.benchmarks.detect`, :mod:`~vigil.benchmarks.e2e`, :mod:`~vigil.benchmarks.soak`,
:mod:`~vigil.benchmarks.store` and :mod:`~vigil.benchmarks.sensor` are the benchmarks; :mod:`vigil.benchmarks.cpu`
reads a process's CPU time.
"""
