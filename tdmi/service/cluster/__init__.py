"""Scale-out over Redis: the adapters the API and worker nodes (``tdmi.service.nodes``) are built from.

Video jobs travel through a Redis Stream with a consumer group (``jobs``, the ``JobQueue`` over
Redis), live streams are pinned to one worker and travel through per-worker and per-API-node
Streams (``remote_feed`` on the API node, ``live_host`` on the worker), workers announce
themselves with a heartbeat (``registry``), the API node knows their models (``catalog``), and
connections wait out a Redis restart (``connection``). Nothing here is a node or imports one.
"""
