"""The live inbox (issue 19 item 7): what changed among the tickets an agent may see, pushed as
Server-Sent Events.

Kafka → `feed` (a consumer group of its own) → the live log (one Redis Stream, trimmed by age)
→ `hub` (one reader per process, fanned out in memory to that process's connections, filtered
by the REST visibility rule) → `routes` (`GET /api/tickets/live`). `items` is the pure part:
what an event becomes on the stream, who may see it, the SSE framing and stream ids.
"""
