"""The roles a process runs as, each one ``Node`` (``tdmi.service.nodes.node``) to the lifespan and
the routes.

``EmbeddedNode`` (``tdmi serve``: models, jobs and live feeds in this process), ``ApiNode``
(``tdmi serve --redis``: requests go to the workers over Redis) and ``WorkerNode`` (``tdmi
worker``: models on one device, work taken from Redis). The embedded node and the worker both
run ``LocalInference``. A node puts together the parts below it (inference, streaming, jobs, the
Redis adapters of ``tdmi.service.cluster``); nothing below imports a node.
"""
