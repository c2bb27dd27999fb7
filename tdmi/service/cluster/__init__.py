"""Scale-out over Redis: API nodes and worker nodes on any number of hosts.

Video jobs travel through a Redis Stream with a consumer group (``jobs``), live streams are
pinned to one worker and travel through per-worker and per-API-node Streams (``remote_feed``,
``live_host``), workers announce themselves with a heartbeat (``registry``).
"""
