"""Benchmarks of fdiv: run the suites in ``benchmarks/``, render the report, find regressions.

``run`` runs pytest-benchmark and keeps the results by date and machine, ``results`` reads them
(the figures convention is described there), ``report`` and ``plots`` render REPORT.md, its PNGs
and the README's Performance section, ``compare`` finds regressions, ``command`` is ``fdiv bench``.
"""
