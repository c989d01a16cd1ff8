"""Benchmarks of eventfold against the eventsourcing package and raw drivers
(``make bench``, ``make bench-quick``; see docs/benchmarks.md)."""
