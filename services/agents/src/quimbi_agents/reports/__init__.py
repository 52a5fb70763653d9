"""Reports for managers (issue 19 item 3): a projection of ticket, message, SLA and rating
events (`projection.py`, `handlers.py`), the figures read from it in SQL (`queries.py`), and
their routes as JSON or CSV (`api.py`, `export.py`)."""
