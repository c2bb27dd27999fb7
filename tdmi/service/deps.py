"""Request dependencies as ``Annotated`` aliases: the node, what it serves, and the API-key check.

The app's state holds one node (``tdmi.service.main``); these give routes the part they need, typed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from tdmi.service.auth import Caller, identify, is_authorised
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.service import JobService
from tdmi.service.metrics import ServiceMetrics
from tdmi.service.nodes.node import Node, ServingNode
from tdmi.service.sources.contract import Sources

__all__ = [
    "AnyNodeDep",
    "Authorised",
    "AuthorisedMedia",
    "CallerDep",
    "CatalogDep",
    "JobsDep",
    "MetricsDep",
    "NodeDep",
    "ReadyNodeDep",
    "SettingsDep",
    "SourcesDep",
]


def _any_node(connection: HTTPConnection) -> Node:
    """Whatever node this app runs (the worker app's routes need no more)."""
    node: Node = connection.app.state.node
    return node


def _node(connection: HTTPConnection) -> ServingNode:
    """The node of an app that serves the public API (``create_app`` mounts those routes only)."""
    node: ServingNode = connection.app.state.node
    return node


AnyNodeDep = Annotated[Node, Depends(_any_node)]
NodeDep = Annotated[ServingNode, Depends(_node)]


def _ready_node(node: NodeDep) -> ServingNode:
    """503 while the node is not ready (loading, Redis unreachable, shutting down); a WebSocket
    refused so is closed with 1013."""
    if node.readiness.reason is not None:
        raise ApiError(503, "not_ready", node.readiness.reason, {"Retry-After": "1"})
    return node


ReadyNodeDep = Annotated[ServingNode, Depends(_ready_node)]


def _settings(node: AnyNodeDep) -> Settings:
    return node.settings


def _catalog(node: ReadyNodeDep) -> ModelCatalog:
    """The models requests may name."""
    return node.catalog


def _jobs(node: ReadyNodeDep) -> JobService:
    return node.jobs


def _sources(node: ReadyNodeDep) -> Sources:
    """501 on a node without camera sources (a role that offers none: every node does today)."""
    if node.sources is None:
        raise ApiError(501, "not_implemented", "camera sources are not served by this node")
    return node.sources


def _metrics(node: AnyNodeDep) -> ServiceMetrics:
    return node.metrics


def _query_key(connection: HTTPConnection, media: bool = False) -> str | None:
    """``?api_key=``, where a browser cannot set headers: a WebSocket, or a ``media`` answer an
    ``<img>`` loads (a camera source's overlay). The log masks it (``tdmi.service.logs``)."""
    websocket = connection.scope["type"] == "websocket"
    return connection.query_params.get("api_key") if websocket or media else None


def _check_key(connection: HTTPConnection, settings: Settings, media: bool) -> None:
    if not is_authorised(settings, connection.headers, _query_key(connection, media)):
        raise ApiError(401, "unauthorised", "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def _authorise(connection: HTTPConnection, settings: Annotated[Settings, Depends(_settings)]) -> None:
    """401 without an accepted key; a WebSocket may send its key as ``?api_key=`` (browsers cannot
    set headers on one), a WebSocket refused so is closed with 1008 (``errors``)."""
    _check_key(connection, settings, media=False)


def _authorise_media(connection: HTTPConnection, settings: Annotated[Settings, Depends(_settings)]) -> None:
    """As ``_authorise``, and ``?api_key=`` is accepted too: the answer is loaded by an ``<img>``."""
    _check_key(connection, settings, media=True)


def _caller(connection: HTTPConnection, settings: Annotated[Settings, Depends(_settings)]) -> Caller:
    """Who is calling (which key, admin or not): jobs and sources belong to the key that created them."""
    return identify(settings, connection.headers, _query_key(connection, media=True))


CallerDep = Annotated[Caller, Depends(_caller)]
SettingsDep = Annotated[Settings, Depends(_settings)]
CatalogDep = Annotated[ModelCatalog, Depends(_catalog)]
JobsDep = Annotated[JobService, Depends(_jobs)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
SourcesDep = Annotated[Sources, Depends(_sources)]
Authorised = Depends(_authorise)
AuthorisedMedia = Depends(_authorise_media)
