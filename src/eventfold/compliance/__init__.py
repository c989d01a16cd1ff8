"""Compliance: verifying the hash chains (against signed checkpoints of their
heads) and exporting the log. The chain's format and the capabilities a store
offers for it and for inspection are part of the store contract
(``eventfold.store.chain``, ``eventfold.store.capabilities``)."""

from eventfold.compliance.chain import Finding, Heads, Report, take_heads, verify
from eventfold.compliance.export import ExportedEvent, export_jsonl

__all__ = ["ExportedEvent", "Finding", "Heads", "Report", "export_jsonl", "take_heads", "verify"]
