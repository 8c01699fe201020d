"""Types of weir's native core (weir._weir); import them from `weir` and `weir.aio`."""

import datetime
import os
from collections.abc import Awaitable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Optional, Union, final

from typing_extensions import Self, TypeAlias

_Start: TypeAlias = Union[Literal["earliest", "latest"], int, datetime.datetime]
"""Where a consumer starts: the oldest record kept, the next one written, an offset, or the
first record at or after a time."""

_Plugin: TypeAlias = tuple[str, Optional[Mapping[str, Any]]]
"""A registered plugin's name and its JSON-able params (or None)."""

_Payload: TypeAlias = Union[bytes, bytearray]

__all__ = [
    "AsyncClient",
    "AsyncConsumer",
    "AsyncProducer",
    "Client",
    "Consumer",
    "GroupError",
    "InvalidArgument",
    "OffsetOutOfRange",
    "PermissionDenied",
    "PluginError",
    "Producer",
    "Record",
    "TopicExists",
    "TopicNotFound",
    "Unauthenticated",
    "Unavailable",
    "WeirError",
    "partition_for_key",
]

class WeirError(Exception):
    """Base class of every error the SDK raises; the message is the broker's."""

class TopicNotFound(WeirError):
    """The topic (or partition) does not exist."""

class TopicExists(WeirError):
    """A topic of that name already exists."""

class InvalidArgument(WeirError):
    """The request broke a rule or a limit (bad name, oversize record, bad start...)."""

class OffsetOutOfRange(WeirError):
    """The offset asked for is not kept (beyond the end, or dropped by retention)."""

class Unavailable(WeirError):
    """The broker cannot be reached, timed out, or is shedding load (busy): retry later."""

class PluginError(WeirError):
    """A plugin is missing, already exists, or failed (trap, budget, bad output)."""

class GroupError(WeirError):
    """A consumer-group operation was refused (unknown group, fenced member, group in use)."""

class Unauthenticated(WeirError):
    """The broker runs with `--auth` and the credentials are missing or wrong."""

class PermissionDenied(WeirError):
    """The user may not do this (the message names the permission it needs)."""

def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition a key goes to: murmur2, the same in every Weir client (and Kafka's)."""

@final
class Record:
    """One consumed record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """Unix milliseconds (the producer's, or the broker's at append)."""
    @property
    def key(self) -> Optional[bytes]: ...
    @property
    def value(self) -> bytes: ...
    @property
    def headers(self) -> dict[str, bytes]: ...

@final
class Client:
    """A connection to a Weir broker; blocking calls release the GIL."""

    def __new__(
        cls,
        addr: str = "127.0.0.1:9292",
        *,
        tls_ca: Optional[str | os.PathLike[str]] = None,
        tls_cert: Optional[str | os.PathLike[str]] = None,
        tls_key: Optional[str | os.PathLike[str]] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
    ) -> Self:
        """Connects (raises `Unavailable` if the broker cannot be reached).

        `tls_ca`: connect over TLS, trusting the CA certificate(s) in this PEM file (a broker
        started with `--tls-cert`). `tls_cert`/`tls_key`: this client's certificate and key
        (PEM), for a broker started with `--tls-client-ca`. `user` and `password`, or `token`:
        who to be to a broker started with `--auth` (calls then raise `Unauthenticated` for
        missing or wrong credentials, `PermissionDenied` for what the user may not do)."""
    @property
    def addr(self) -> str: ...
    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        retention_ms: Optional[int] = None,
        retention_bytes: Optional[int] = None,
        replication_factor: Optional[int] = None,
        min_insync_replicas: Optional[int] = None,
    ) -> None:
        """Creates a topic; `retention_ms=-1` keeps records forever, None the broker default.
        In a cluster, `replication_factor` copies of each partition (None: 1), and
        `min_insync_replicas` of them in sync for an acks="all" produce (None: 1)."""
    def list_topics(self) -> list[str]:
        """Names of all topics."""
    def delete_topic(self, name: str) -> None:
        """Deletes a topic and its records."""
    def producer(
        self,
        linger_ms: int = 5,
        batch_bytes: Optional[int] = None,
        buffer_bytes: Optional[int] = None,
        compression: Optional[Literal["none", "lz4", "zstd"]] = None,
        delivery_timeout_ms: Optional[int] = None,
        idempotent: bool = True,
        acks: Optional[Union[Literal["all", "leader"], int]] = None,
    ) -> Producer:
        """A batching, idempotent producer (the Rust SDK's). Use it as a context manager."""
    def consumer(
        self,
        topic: str,
        group: Optional[str] = None,
        start: Optional[_Start] = None,
        plugins: Optional[Sequence[_Plugin]] = None,
        idle_timeout_ms: Optional[int] = None,
        partitions: Optional[Sequence[int]] = None,
        auto_commit: bool = True,
        session_timeout_ms: Optional[int] = None,
    ) -> Consumer:
        """Records of `topic`, as an iterator.

        group: read as a member of that consumer group (partitions shared with the group's other
        members, committed offsets; `start` applies where the group has none). start: default
        "earliest". plugins: a chain the broker applies to every batch. idle_timeout_ms: stop
        iterating after that long with nothing new (None: follow forever). partitions: read only
        these (not with a group). auto_commit: a group member commits what it consumed every
        few seconds and when it closes or loses a partition (else call `commit()`).
        session_timeout_ms: how long the group waits for a silent member before handing its
        partitions to the others.
        """

@final
class Producer:
    """A batching producer: `send` buffers, `flush` waits for the broker's acknowledgements."""

    def send(
        self,
        topic: str,
        value: _Payload,
        key: Optional[_Payload] = None,
        headers: Optional[Mapping[str, _Payload]] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
    ) -> None:
        """Buffers one record; returns at once unless the buffer is full. The partition comes
        from the key (or spreads keyless records). Delivery errors raise in the next `flush()`."""
    def flush(self) -> None:
        """Sends everything buffered and waits for the acknowledgements; raises the first
        delivery error since the previous flush."""
    def close(self) -> None:
        """Flushes, then refuses further records."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Consumer:
    """Records of one topic, as an iterator (see `Client.consumer`). One thread at a time."""

    def __iter__(self) -> Iterator[Record]: ...
    def __next__(self) -> Record: ...
    def commit(self) -> None:
        """Commits the positions reached (group consumers)."""
    def position(self, partition: int) -> Optional[int]:
        """The next offset this consumer yields from `partition` (None if it does not read it)."""
    def assignment(self) -> list[int]:
        """The partitions this consumer reads now (a group member: its current assignment)."""
    def close(self) -> None:
        """Leaves the group (committing what was consumed, with auto-commit) and ends iteration."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class AsyncClient:
    """`weir.aio.Client`: `Client` for asyncio. Create it with `await AsyncClient.connect(addr)`."""

    @staticmethod
    def connect(
        addr: str = "127.0.0.1:9292",
        *,
        tls_ca: Optional[str | os.PathLike[str]] = None,
        tls_cert: Optional[str | os.PathLike[str]] = None,
        tls_key: Optional[str | os.PathLike[str]] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
    ) -> Awaitable[AsyncClient]:
        """Connects (raises `Unavailable` if the broker cannot be reached); TLS and
        credentials as `Client`."""
    @property
    def addr(self) -> str: ...
    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        retention_ms: Optional[int] = None,
        retention_bytes: Optional[int] = None,
        replication_factor: Optional[int] = None,
        min_insync_replicas: Optional[int] = None,
    ) -> Awaitable[None]:
        """Creates a topic; `retention_ms=-1` keeps records forever, None the broker default.
        In a cluster, `replication_factor` copies of each partition (None: 1), and
        `min_insync_replicas` of them in sync for an acks="all" produce (None: 1)."""
    def list_topics(self) -> Awaitable[list[str]]:
        """Names of all topics."""
    def delete_topic(self, name: str) -> Awaitable[None]:
        """Deletes a topic and its records."""
    def producer(
        self,
        linger_ms: int = 5,
        batch_bytes: Optional[int] = None,
        buffer_bytes: Optional[int] = None,
        compression: Optional[Literal["none", "lz4", "zstd"]] = None,
        delivery_timeout_ms: Optional[int] = None,
        idempotent: bool = True,
        acks: Optional[Union[Literal["all", "leader"], int]] = None,
    ) -> AsyncProducer:
        """A batching, idempotent producer. Use it with `async with`."""
    def consumer(
        self,
        topic: str,
        group: Optional[str] = None,
        start: Optional[_Start] = None,
        plugins: Optional[Sequence[_Plugin]] = None,
        idle_timeout_ms: Optional[int] = None,
        partitions: Optional[Sequence[int]] = None,
        auto_commit: bool = True,
        session_timeout_ms: Optional[int] = None,
    ) -> AsyncConsumer:
        """Records of `topic`, as an async iterator (arguments as `Client.consumer`).

        `c = await client.consumer(...)` opens it at once (joins the group, resolves `start`)
        and raises opening errors such as `TopicNotFound` there; `async for` alone opens it at
        the first record."""

@final
class AsyncProducer:
    """`weir.aio.Producer`: a batching producer for asyncio."""

    def send(
        self,
        topic: str,
        value: _Payload,
        key: Optional[_Payload] = None,
        headers: Optional[Mapping[str, _Payload]] = None,
        partition: Optional[int] = None,
        timestamp_ms: Optional[int] = None,
    ) -> Awaitable[None]:
        """Buffers one record; completes at once unless the buffer is full. Delivery errors
        raise in the next `flush()`."""
    def flush(self) -> Awaitable[None]:
        """Sends everything buffered and waits for the acknowledgements."""
    def close(self) -> Awaitable[None]:
        """Flushes, then refuses further records."""
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]: ...

@final
class AsyncConsumer:
    """`weir.aio.Consumer`: records of one topic, as an async iterator."""

    def __await__(self) -> Generator[Any, Any, Self]: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[Record]: ...
    def commit(self) -> Awaitable[None]:
        """Commits the positions reached (group consumers)."""
    def position(self, partition: int) -> Optional[int]:
        """The next offset this consumer yields from `partition` (None if it does not read it,
        or has not opened yet)."""
    def assignment(self) -> list[int]:
        """The partitions this consumer reads now (a group member: its current assignment)."""
    def close(self) -> Awaitable[None]:
        """Leaves the group (committing what was consumed, with auto-commit) and ends iteration."""
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        ty: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Awaitable[None]: ...
