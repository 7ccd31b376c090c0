"""The Firestore client, the raw RPCs the store sends on its channel, and EVERY use
of google-cloud-firestore's private parts.

google-cloud-firestore gives crontick the credentials (Application Default
Credentials, or anonymous ones on the emulator), the gRPC channel to the right
endpoint, the emulator switch (``FIRESTORE_EMULATOR_HOST``) and the exception
types (google-api-core's). The store's hot path does not use its documents,
references or write builders: :class:`Connection` sends raw protobuf requests on
the client's own channel (``RunQuery``, ``BatchGetDocuments``, ``BatchWrite``,
``Commit``) and hands back raw responses, which :mod:`storage.firestore_codec`
decodes.

Private parts: every one this module touches is listed in :data:`PRIVATE_PARTS`
(nothing else in crontick uses any), ``requirements.txt`` pins google-cloud-firestore
below its next major version, and ``tests/test_firestore_private_parts.py`` fails,
naming the symbol, when a release removes or reshapes one. Why they are used: the
channel's reconnect options (see :data:`CHANNEL_OPTIONS`) can only be set where the
library builds the channel, ``Client._firestore_api_helper``, which this module
overrides (same body as the library's, plus the options); ``Client._firestore_api``
is the only way to the GAPIC client (whose ``transport.grpc_channel`` is public).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

# (where, name, kind): kind "class" = an attribute of that class (a method or property we
# call or override), "instance" = an attribute the library sets on every client in
# __init__ (checked on a client built without connecting), "module" = a module global.
PRIVATE_PARTS: tuple[tuple[str, str, str], ...] = (
    ("google.cloud.firestore_v1.client.Client", "_firestore_api", "class"),  # the GAPIC client (its transport's channel)
    ("google.cloud.firestore_v1.base_client.BaseClient", "_firestore_api_helper", "class"),  # overridden: builds the channel
    ("google.cloud.firestore_v1.base_client.BaseClient", "_firestore_api_internal", "class"),  # the cache the override fills
    ("google.cloud.firestore_v1.base_client.BaseClient", "_target", "class"),  # endpoint, or the emulator's host
    ("google.cloud.firestore_v1.base_client.BaseClient", "_emulator_host", "instance"),  # FIRESTORE_EMULATOR_HOST, read in __init__
    ("google.cloud.firestore_v1.base_client.BaseClient", "_credentials", "instance"),  # set by google.cloud.client.Client
    ("google.cloud.firestore_v1.base_client.BaseClient", "_client_options", "instance"),
    ("google.cloud.firestore_v1.base_client", "_DEFAULT_CHANNEL_OPTIONS", "module"),  # keepalive + message sizes
    ("google.cloud.firestore_v1.base_client", "_GRPC_MSG_SIZE_OPTIONS", "module"),  # message sizes, on the emulator
)
# The override below must keep the library's signature: the test checks it too.
HELPER_PARAMETERS = ("self", "transport", "client_class", "client_module")


def private_part_problem(where: str, name: str, kind: str) -> str | None:
    """Why the private part ``where``.``name`` (see :data:`PRIVATE_PARTS`) is not what this
    module relies on in the installed google-cloud-firestore, or None if it is."""
    import importlib
    import inspect

    from google.cloud.firestore_v1 import __version__

    module_name, _, owner_name = where.rpartition(".") if kind != "module" else (where, "", "")
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as exc:
        return f"google-cloud-firestore {__version__}: cannot import {module_name} ({exc}), which storage/firestore_client.py uses for {name}"
    if owner_name:
        owner = getattr(owner, owner_name, None)
        if owner is None:
            return f"google-cloud-firestore {__version__} has no {where}, whose {name} storage/firestore_client.py uses"
    if kind == "instance":
        from google.auth.credentials import AnonymousCredentials

        client = client_class()(project="private-parts-check", credentials=AnonymousCredentials())  # connects to nothing
        found = name in vars(client)
    else:
        found = hasattr(owner, name)
    if not found:
        what = "set on every client by __init__" if kind == "instance" else f"a {kind} attribute"
        return f"google-cloud-firestore {__version__} no longer has {where}.{name} ({what}); storage/firestore_client.py relies on it: see its PRIVATE_PARTS"
    if name == "_firestore_api_helper":
        params = tuple(inspect.signature(getattr(owner, name)).parameters)
        if params != HELPER_PARAMETERS:
            return f"google-cloud-firestore {__version__} changed {where}.{name}{params}; storage/firestore_client.py overrides it as {HELPER_PARAMETERS}"
    return None

EMULATOR_PROJECT = "demo-crontick"

# gRPC keeps reconnecting to an unreachable server with a backoff growing to 120 s,
# and by default shares that state between every channel of the process: after an
# outage even a new client would keep failing for minutes. Reconnect within 1 s.
# grpc.experimental.ChannelOptions.SingleThreadedUnaryStream: a streaming call (RunQuery,
# BatchGetDocuments) is read on the calling thread instead of through a thread gRPC
# spawns per call: an idle tick (two RunQuery RPCs) measured 2.2-3.2 ms p50 in-process
# on the emulator with it, 4.0-5.5 ms without (200 ticks each, the machine loaded).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.use_local_subchannel_pool", 1),
    ("SingleThreadedUnaryStream", 1),
]
_SERVICE = "/google.firestore.v1.Firestore/"
_CLIENT_CLASS: Any = None


def client_class() -> Any:
    """``firestore.Client`` whose gRPC channel uses :data:`CHANNEL_OPTIONS` (built lazily so
    that importing this module does not load google-cloud-firestore)."""
    global _CLIENT_CLASS
    if _CLIENT_CLASS is not None:
        return _CLIENT_CLASS
    import grpc
    from google.cloud import firestore
    from google.cloud.firestore_v1 import base_client

    class Client(firestore.Client):
        def _firestore_api_helper(self, transport: Any, client_class: Any, client_module: Any) -> Any:
            if self._firestore_api_internal is None:
                if self._emulator_host is not None:
                    token = getattr(self._credentials, "id_token", None) or "owner"
                    options = [("Authorization", f"Bearer {token}"), *base_client._GRPC_MSG_SIZE_OPTIONS, *CHANNEL_OPTIONS]
                    channel = grpc.insecure_channel(self._emulator_host, options=options)
                else:
                    options = [*base_client._DEFAULT_CHANNEL_OPTIONS, *CHANNEL_OPTIONS]
                    channel = transport.create_channel(self._target, credentials=self._credentials, options=options)
                self._firestore_api_internal = client_class(transport=transport(host=self._target, channel=channel), client_options=self._client_options)
            return self._firestore_api_internal

    _CLIENT_CLASS = Client
    return Client


def make_client(project: str | None, database: str) -> Any:
    """The client for ``project`` (else ``GOOGLE_CLOUD_PROJECT``, else the emulator's demo
    project when ``FIRESTORE_EMULATOR_HOST`` is set). Connects to nothing yet."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    if project is None and os.environ.get("FIRESTORE_EMULATOR_HOST"):
        project = EMULATOR_PROJECT
    return client_class()(project=project, database=database)


def gapic_api(client: Any) -> Any:
    """The client's GAPIC ``FirestoreClient`` (created on first use, with the channel)."""
    return client._firestore_api


def is_emulator(client: Any) -> bool:
    return client._emulator_host is not None


class Connection:
    """Raw RPCs on one client's channel: requests and responses are raw protobuf messages.

    ``count(method)`` is called before every attempt (the store's RPC counters). A gRPC
    error is raised as google-api-core's exception for its status (``from_grpc_error``),
    the types the library's own calls raise; a streamed response raises it while being
    read.
    """

    def __init__(self, client: Any, database: str, count: Callable[[str], None]) -> None:
        import grpc
        from google.api_core import exceptions
        from google.api_core.gapic_v1 import client_info, routing_header

        from storage import firestore_codec as codec

        self.client = client
        self.database_path = f"projects/{client.project}/databases/{database}"
        self.documents_path = f"{self.database_path}/documents"
        api = gapic_api(client)
        self.transport = api.transport
        channel = self.transport.grpc_channel
        metadata = [
            ("google-cloud-resource-prefix", self.database_path),
            routing_header.to_grpc_metadata((("database", self.database_path),)),
            client_info.ClientInfo().to_grpc_metadata(),
        ]
        if is_emulator(client):
            metadata.append(("authorization", "Bearer owner"))  # what the emulator expects (as the library sends it)
        self.metadata = tuple(metadata)
        self._count = count
        self._rpc_error = grpc.RpcError
        self._from_grpc_error = exceptions.from_grpc_error
        identity = lambda payload: payload  # noqa: E731 - requests are serialized by the caller (once, sizes checked)
        self._run_query = channel.unary_stream(_SERVICE + "RunQuery", request_serializer=identity, response_deserializer=codec.RunQueryResponse.FromString)
        self._batch_get = channel.unary_stream(_SERVICE + "BatchGetDocuments", request_serializer=identity, response_deserializer=codec.BatchGetDocumentsResponse.FromString)
        self._batch_write = channel.unary_unary(_SERVICE + "BatchWrite", request_serializer=identity, response_deserializer=codec.BatchWriteResponse.FromString)
        self._commit = channel.unary_unary(_SERVICE + "Commit", request_serializer=identity, response_deserializer=codec.CommitResponse.FromString)

    def document_path(self, collection: str, doc_id: str) -> str:
        return f"{self.documents_path}/{collection}/{doc_id}"

    def run_query(self, request: Any, timeout: float) -> Iterator[Any]:
        """Starts the RPC at once (so that several queries run side by side); read the iterator."""
        self._count("run_query")
        return self._stream(self._run_query, request.SerializeToString(), timeout)

    def batch_get(self, request: Any, timeout: float) -> Iterator[Any]:
        self._count("batch_get_documents")
        return self._stream(self._batch_get, request.SerializeToString(), timeout)

    def batch_write(self, payload: bytes, timeout: float) -> Any:
        """``payload``: a serialized BatchWriteRequest (the caller sizes it)."""
        self._count("batch_write")
        return self._unary(self._batch_write, payload, timeout)

    def commit(self, request: Any, timeout: float) -> Any:
        self._count("commit")
        return self._unary(self._commit, request.SerializeToString(), timeout)

    def _unary(self, stub: Any, payload: bytes, timeout: float) -> Any:
        try:
            return stub(payload, timeout=timeout, metadata=self.metadata)
        except self._rpc_error as exc:
            raise self._from_grpc_error(exc) from exc

    def _stream(self, stub: Any, payload: bytes, timeout: float) -> Iterator[Any]:
        try:
            call = stub(payload, timeout=timeout, metadata=self.metadata)
        except self._rpc_error as exc:
            raise self._from_grpc_error(exc) from exc
        return self._read(call)

    def _read(self, call: Any) -> Iterator[Any]:
        try:
            yield from call
        except self._rpc_error as exc:
            raise self._from_grpc_error(exc) from exc

    def close(self) -> None:
        self.transport.close()
