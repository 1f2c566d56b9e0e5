"""The host's security briefing: a card per provider, and its acknowledgement.

`content.py` reads the per-provider words from `templates/briefing/`; `service.py` records
and checks that a host has acknowledged the card for a provider, when the policy asks
(`briefing_acknowledgement: required`).
"""
