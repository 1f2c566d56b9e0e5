"""One-click emergency actions for hosts: end now, rotate the link, report an incident.

A link is a row (`ActionLink`) plus an HMAC over its id (`tokens.py`): single-purpose,
bound to one host and meeting, usable once, and valid until shortly after the meeting
ends. Following one only shows a confirmation page behind sign-in; the confirmation POST
(with CSRF) acts, through the same services as the API.
"""
