"""The tamper-evident audit log's parts: the chain, its signing keys, and where it is kept.

- :mod:`baton.audit.chain`: how records are sealed (hash chain, HMAC signature) and
  how a sequence of records is verified against keys and anchors;
- :mod:`baton.audit.keys`: the writers' signing keys, from the environment;
- :mod:`baton.audit.sink`: the sink interface and ``BATON_AUDIT_SINK`` selection;
- :mod:`baton.audit.postgres`: the PostgreSQL sink for several workers on several hosts;
- :mod:`baton.audit.anchors`: what Temporal recorded of each case's log (its memo), for verify.

The embedded default, one JSONL file, is :class:`baton.auditlog.AuditLog`.
This package's ``__init__`` imports nothing, so the file sink and these modules can
import each other's parts without a cycle.
"""
