"""Incident reports: a frozen, hashed evidence snapshot, notices, triage and follow-ups."""
