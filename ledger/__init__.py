"""The tamper-evident audit ledger: a hash chain of events (bottom layer; imports no other app)."""
