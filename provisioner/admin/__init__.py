"""What IT sees: every meeting's metadata, the audit log, the effective policy per group."""
