"""Attachments: files uploaded to a ticket, then attached to a message (upload-then-reference).

`files.py` (pure: type sniffing, filename rules, Content-Disposition), `storage.py` (the one
storage interface: a local directory or S3), `service.py` (upload, attach, delete, sweep),
`routes.py` (upload, list, download).
"""
