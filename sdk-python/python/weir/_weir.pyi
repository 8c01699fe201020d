"""Types of weir's native core (weir._weir); import them from `weir` and `weir.aio`."""

import datetime
import os
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Optional, Union, final

from typing_extensions import Self, TypeAlias

_Start: TypeAlias = Union[Literal["earliest", "latest"], int, datetime.datetime]
"""Where a consumer starts: the oldest record kept, the next one written, an offset, or the
first record at or after a time."""

_Plugin: TypeAlias = tuple[str, Optional[Mapping[str, Any]]]
"""A registered plugin's name and its JSON-able params (or None)."""

_Payload: TypeAlias = Union[bytes, bytearray]

_Time: TypeAlias = Union[int, datetime.datetime]
"""Unix milliseconds, or a datetime."""

_DeliveryCallback: TypeAlias = Callable[[Optional[WeirError], Optional[RecordMetadata]], object]
"""`on_delivery(err, meta)`: `err` None and `meta` where the record went, or `err` why it
failed and `meta` None."""

__all__ = [
    "Acl",
    "AsyncClient",
    "AsyncConsumer",
    "AsyncProducer",
    "Client",
    "Consumer",
    "DeliveryHandle",
    "GroupDescription",
    "GroupError",
    "GroupMember",
    "GroupPartition",
    "GroupSummary",
    "InvalidArgument",
    "OffsetOutOfRange",
    "PartitionInfo",
    "PermissionDenied",
    "PipelineError",
    "PipelineInfo",
    "PipelinePartition",
    "PluginError",
    "PluginInfo",
    "Producer",
    "Record",
    "RecordMetadata",
    "TopicDescription",
    "TopicExists",
    "TopicNotFound",
    "Unauthenticated",
    "Unavailable",
    "UserError",
    "UserInfo",
    "ViewInfo",
    "WeirError",
    "WhoAmI",
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

class PipelineError(WeirError):
    """A pipeline is missing or already exists."""

class UserError(WeirError):
    """A user or ACL is missing or already exists, or the last superuser cannot go."""

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
class RecordMetadata:
    """Where an acknowledged record was stored."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """Unix milliseconds: the record's own timestamp, else the broker's at append."""

@final
class DeliveryHandle:
    """A sent record's acknowledgement to come (`Producer.send`'s answer)."""

    def done(self) -> bool:
        """Whether the broker acknowledged the record (or the producer gave up on it)."""
    def result(self, timeout: Optional[float] = None) -> RecordMetadata:
        """Waits (at most `timeout` seconds) for the acknowledgement; raises the producer's
        error if it gave up on the record, `TimeoutError` if `timeout` passed first."""
    def __await__(self) -> Generator[Any, Any, RecordMetadata]: ...

@final
class PartitionInfo:
    """One partition of a topic (`TopicDescription.partitions`)."""

    @property
    def partition(self) -> int: ...
    @property
    def earliest_offset(self) -> int:
        """The oldest offset still kept."""
    @property
    def latest_offset(self) -> int:
        """The next offset to be written."""
    @property
    def size_bytes(self) -> int: ...
    @property
    def segments(self) -> int: ...
    @property
    def leader(self) -> Optional[int]:
        """In a cluster, the node id of its leader (None standalone, or with no leader)."""
    @property
    def leader_epoch(self) -> int: ...
    @property
    def replicas(self) -> list[int]:
        """In a cluster, the nodes holding a copy, the preferred leader first."""
    @property
    def isr(self) -> list[int]:
        """In a cluster, the replicas in sync with the leader."""

@final
class TopicDescription:
    """A topic's settings and partitions (`Client.describe_topic`)."""

    @property
    def name(self) -> str: ...
    @property
    def retention_ms(self) -> Optional[int]:
        """None: kept forever."""
    @property
    def retention_bytes(self) -> Optional[int]:
        """None: no size limit."""
    @property
    def segment_bytes(self) -> int: ...
    @property
    def segment_ms(self) -> int: ...
    @property
    def min_insync_replicas(self) -> int: ...
    @property
    def view_of(self) -> Optional[str]:
        """A view's source topic (None for a topic)."""
    @property
    def partitions(self) -> list[PartitionInfo]: ...

@final
class PluginInfo:
    """A registered WebAssembly plugin."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str:
        """filter, map, filter_map, flat_map, aggregate or route."""
    @property
    def size_bytes(self) -> int: ...
    @property
    def created_ms(self) -> int: ...
    @property
    def memory_limit_bytes(self) -> int: ...
    @property
    def call_timeout_ms(self) -> int: ...
    @property
    def max_output_bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def version(self) -> int:
        """1 when registered, +1 on each replacement."""

@final
class PipelinePartition:
    """One source partition of a pipeline (`Client.describe_pipeline`)."""

    @property
    def partition(self) -> int: ...
    @property
    def position(self) -> int:
        """The next source offset to process."""
    @property
    def end_offset(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def records_in(self) -> int: ...
    @property
    def records_out(self) -> int: ...
    @property
    def worker(self) -> Optional[int]:
        """In a cluster, the node whose worker runs it (None standalone)."""

@final
class PipelineInfo:
    """A pipeline's definition, status and counters."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str:
        """Output 0."""
    @property
    def destinations(self) -> list[str]:
        """Every output, output 0 first."""
    @property
    def plugins(self) -> list[tuple[str, Any]]:
        """The chain: (plugin name, params or None)."""
    @property
    def status(self) -> Literal["running", "failed"]: ...
    @property
    def error(self) -> Optional[str]:
        """Why it failed."""
    @property
    def created_ms(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def records_in(self) -> int: ...
    @property
    def records_out(self) -> int: ...
    @property
    def partitions(self) -> list[PipelinePartition]:
        """Per source partition (`describe_pipeline` only; empty in `list_pipelines`)."""

@final
class ViewInfo:
    """A view: a read-only topic, its source's records through a chain of plugins."""

    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def plugins(self) -> list[tuple[str, Any]]:
        """The chain: (plugin name, params or None)."""
    @property
    def created_ms(self) -> int: ...

@final
class GroupSummary:
    """A consumer group in `Client.list_groups`."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str:
        """empty, stable or reconciling."""
    @property
    def members(self) -> int: ...
    @property
    def epoch(self) -> int: ...

@final
class GroupMember:
    """A live member of a group."""

    @property
    def member_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def member_epoch(self) -> int: ...
    @property
    def topics(self) -> list[str]: ...
    @property
    def assignment(self) -> list[tuple[str, int]]:
        """(topic, partition) it reads now."""
    @property
    def revoking(self) -> list[tuple[str, int]]: ...
    @property
    def session_timeout_ms(self) -> int: ...
    @property
    def since_heartbeat_ms(self) -> int: ...

@final
class GroupPartition:
    """One partition of a group's description."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def committed_offset(self) -> Optional[int]: ...
    @property
    def end_offset(self) -> int: ...
    @property
    def lag(self) -> Optional[int]: ...
    @property
    def member_id(self) -> Optional[str]: ...

@final
class GroupDescription:
    """A group's members and partitions (`Client.describe_group`)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def epoch(self) -> int: ...
    @property
    def members(self) -> list[GroupMember]: ...
    @property
    def partitions(self) -> list[GroupPartition]: ...

@final
class UserInfo:
    """A user (`Client.list_users`)."""

    @property
    def name(self) -> str: ...
    @property
    def credential(self) -> Literal["password", "token"]: ...
    @property
    def superuser(self) -> bool: ...
    @property
    def created_ms(self) -> int: ...

@final
class Acl:
    """A permission: `principal` may do `operation` on resources of `resource_type` whose
    names match `pattern`."""

    @property
    def principal(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def resource_type(self) -> str: ...
    @property
    def pattern(self) -> str: ...

@final
class WhoAmI:
    """Who the broker takes this client for."""

    @property
    def name(self) -> str:
        """Empty when the broker runs without --auth."""
    @property
    def superuser(self) -> bool: ...
    @property
    def auth_enabled(self) -> bool: ...

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
    def describe_topic(self, name: str) -> TopicDescription:
        """Settings and, per partition, earliest/latest offsets, size and (in a cluster)
        leader, replicas and ISR."""
    def delete_topic(self, name: str) -> None:
        """Deletes a topic and its records."""
    def offsets_for_times(self, topic: str, timestamps: Mapping[int, _Time]) -> dict[int, int]:
        """Per partition, the first offset at or after the time given for it, or the log end
        if there is none."""
    def register_plugin(
        self,
        name: str,
        module: Union[bytes, str, os.PathLike[str]],
        *,
        replace: bool = False,
        memory_bytes: Optional[int] = None,
        call_timeout_ms: Optional[int] = None,
        max_output_bytes: Optional[int] = None,
    ) -> PluginInfo:
        """Registers a WebAssembly plugin from the `.wasm` file's bytes or path (`replace`:
        swap an existing plugin's module). Raises `InvalidArgument` for a module that is not
        a plugin, `PluginError` if the name is taken."""
    def list_plugins(self) -> list[PluginInfo]:
        """Every registered plugin, by name."""
    def delete_plugin(self, name: str) -> None:
        """Deletes a plugin (`PluginError` while a pipeline or view uses it)."""
    def create_pipeline(
        self,
        name: str,
        source: str,
        destination: Union[str, Sequence[str]],
        plugins: Sequence[_Plugin],
        start: Literal["earliest", "latest"] = "earliest",
    ) -> PipelineInfo:
        """Creates and starts an exactly-once pipeline `source` -> `plugins` ->
        `destination` (several topics: a `route` stage picks among them)."""
    def list_pipelines(self) -> list[PipelineInfo]:
        """Every pipeline, with totals."""
    def describe_pipeline(self, name: str) -> PipelineInfo:
        """A pipeline with per-partition position, lag, counters and worker."""
    def delete_pipeline(self, name: str) -> None:
        """Stops and deletes a pipeline (its output stays)."""
    def resume_pipeline(self, name: str) -> PipelineInfo:
        """Restarts a failed pipeline from where it stopped."""
    def create_view(self, name: str, source: str, plugins: Sequence[_Plugin]) -> ViewInfo:
        """Creates a read-only view of `source` through `plugins`."""
    def list_views(self) -> list[ViewInfo]:
        """Every view, by name."""
    def delete_view(self, name: str) -> None:
        """Deletes a view."""
    def list_groups(self) -> list[GroupSummary]:
        """Every consumer group, by name."""
    def describe_group(self, group: str) -> GroupDescription:
        """Members and, per partition, committed offset, end offset, lag and owner."""
    def committed_offsets(self, group: str, topic: str) -> dict[int, Optional[int]]:
        """The group's committed offset per partition of `topic` (None: never committed)."""
    def reset_group(self, group: str, topic: str, to: Optional[_Start] = None) -> dict[int, int]:
        """Moves the group's offsets in `topic` (default "earliest"); only while it has no
        live members (`GroupError` otherwise). Returns the new offsets."""
    def delete_group(self, group: str) -> None:
        """Deletes a group and its offsets; only while it has no live members."""
    def whoami(self) -> WhoAmI:
        """Who the broker takes this client for."""
    def add_user(
        self, name: str, password: Optional[str] = None, superuser: bool = False
    ) -> Optional[str]:
        """Adds a user (superusers only); without a password, returns its new token (the only
        time it is seen)."""
    def remove_user(self, name: str) -> int:
        """Removes a user and its ACLs; returns how many ACLs went."""
    def list_users(self) -> list[UserInfo]:
        """Every user (superusers only)."""
    def grant_acl(
        self,
        principal: str,
        operation: Literal["read", "write", "admin"],
        resource_type: Literal["topic", "group", "plugin", "pipeline"],
        pattern: str,
    ) -> None:
        """Lets `principal` (a user, or "*") do `operation` on resources matching `pattern`
        (a name, a prefix and "*", or "*")."""
    def revoke_acl(
        self,
        principal: str,
        operation: Literal["read", "write", "admin"],
        resource_type: Literal["topic", "group", "plugin", "pipeline"],
        pattern: str,
    ) -> None:
        """Takes back a grant (`UserError` if it was not granted)."""
    def list_acls(self, principal: Optional[str] = None) -> list[Acl]:
        """Every ACL, or `principal`'s (superusers only)."""
    def producer(
        self,
        linger_ms: int = 5,
        batch_bytes: Optional[int] = None,
        buffer_bytes: Optional[int] = None,
        compression: Optional[Literal["none", "lz4", "zstd"]] = None,
        delivery_timeout_ms: Optional[int] = None,
        idempotent: bool = True,
        acks: Optional[Union[Literal["all", "leader"], int]] = None,
        on_delivery: Optional[_DeliveryCallback] = None,
    ) -> Producer:
        """A batching, idempotent producer (the Rust SDK's). Use it as a context manager.
        `on_delivery(err, meta)` is called for each record sent without its own, from
        `poll()`, `flush()` or `close()` on the calling thread."""
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
        on_delivery: Optional[_DeliveryCallback] = None,
    ) -> DeliveryHandle:
        """Buffers one record and returns its `DeliveryHandle`; returns at once unless the
        buffer is full. The partition comes from the key (or spreads keyless records).
        `on_delivery` (else the producer's) runs in a later `poll()`, `flush()` or `close()`.
        Delivery errors also raise in the next `flush()`."""
    def poll(self, timeout: float = 0.0) -> int:
        """Runs the callbacks of records acknowledged (or failed) so far, waiting up to
        `timeout` seconds for one if none is ready; returns how many ran."""
    def flush(self) -> None:
        """Sends everything buffered, waits for the acknowledgements and runs their callbacks;
        raises the first delivery error since the previous flush."""
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
    def poll_batch(self, max_records: int = 500, timeout: Optional[float] = None) -> list[Record]:
        """Up to `max_records` records: waits up to `timeout` seconds (None: the consumer's
        idle timeout, else for ever) for the first, then takes those already fetched; an
        empty list when none came."""
    def seek(self, partition: int, offset: Union[int, datetime.datetime]) -> None:
        """The next record read from `partition` is at `offset`, or the first at or after a
        time."""
    def pause(self, partitions: Sequence[int]) -> None:
        """Stops fetching these partitions (positions kept) until `resume`."""
    def resume(self, partitions: Sequence[int]) -> None:
        """Fetches paused partitions again from where they were."""
    def paused(self) -> list[int]:
        """The partitions paused now."""
    def offsets_for_times(self, timestamps: Mapping[int, _Time]) -> dict[int, int]:
        """Per partition, the first offset at or after the time given for it, or the log end
        if there is none."""
    def committed(self) -> dict[int, Optional[int]]:
        """The group's committed offsets of this topic (None: never committed)."""
    def commit(self, offsets: Optional[Mapping[int, int]] = None) -> None:
        """Commits the positions reached, or `offsets` ({partition: next offset}) (group
        consumers)."""
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
    def describe_topic(self, name: str) -> Awaitable[TopicDescription]:
        """Settings and, per partition, earliest/latest offsets, size and (in a cluster)
        leader, replicas and ISR."""
    def delete_topic(self, name: str) -> Awaitable[None]:
        """Deletes a topic and its records."""
    def offsets_for_times(self, topic: str, timestamps: Mapping[int, _Time]) -> Awaitable[dict[int, int]]:
        """Per partition, the first offset at or after the time given for it, or the log end
        if there is none."""
    def register_plugin(
        self,
        name: str,
        module: Union[bytes, str, os.PathLike[str]],
        *,
        replace: bool = False,
        memory_bytes: Optional[int] = None,
        call_timeout_ms: Optional[int] = None,
        max_output_bytes: Optional[int] = None,
    ) -> Awaitable[PluginInfo]:
        """Registers a WebAssembly plugin from the `.wasm` file's bytes or path (`replace`:
        swap an existing plugin's module). Raises `InvalidArgument` for a module that is not
        a plugin, `PluginError` if the name is taken."""
    def list_plugins(self) -> Awaitable[list[PluginInfo]]:
        """Every registered plugin, by name."""
    def delete_plugin(self, name: str) -> Awaitable[None]:
        """Deletes a plugin (`PluginError` while a pipeline or view uses it)."""
    def create_pipeline(
        self,
        name: str,
        source: str,
        destination: Union[str, Sequence[str]],
        plugins: Sequence[_Plugin],
        start: Literal["earliest", "latest"] = "earliest",
    ) -> Awaitable[PipelineInfo]:
        """Creates and starts an exactly-once pipeline `source` -> `plugins` ->
        `destination` (several topics: a `route` stage picks among them)."""
    def list_pipelines(self) -> Awaitable[list[PipelineInfo]]:
        """Every pipeline, with totals."""
    def describe_pipeline(self, name: str) -> Awaitable[PipelineInfo]:
        """A pipeline with per-partition position, lag, counters and worker."""
    def delete_pipeline(self, name: str) -> Awaitable[None]:
        """Stops and deletes a pipeline (its output stays)."""
    def resume_pipeline(self, name: str) -> Awaitable[PipelineInfo]:
        """Restarts a failed pipeline from where it stopped."""
    def create_view(self, name: str, source: str, plugins: Sequence[_Plugin]) -> Awaitable[ViewInfo]:
        """Creates a read-only view of `source` through `plugins`."""
    def list_views(self) -> Awaitable[list[ViewInfo]]:
        """Every view, by name."""
    def delete_view(self, name: str) -> Awaitable[None]:
        """Deletes a view."""
    def list_groups(self) -> Awaitable[list[GroupSummary]]:
        """Every consumer group, by name."""
    def describe_group(self, group: str) -> Awaitable[GroupDescription]:
        """Members and, per partition, committed offset, end offset, lag and owner."""
    def committed_offsets(self, group: str, topic: str) -> Awaitable[dict[int, Optional[int]]]:
        """The group's committed offset per partition of `topic` (None: never committed)."""
    def reset_group(self, group: str, topic: str, to: Optional[_Start] = None) -> Awaitable[dict[int, int]]:
        """Moves the group's offsets in `topic` (default "earliest"); only while it has no
        live members (`GroupError` otherwise). Returns the new offsets."""
    def delete_group(self, group: str) -> Awaitable[None]:
        """Deletes a group and its offsets; only while it has no live members."""
    def whoami(self) -> Awaitable[WhoAmI]:
        """Who the broker takes this client for."""
    def add_user(
        self, name: str, password: Optional[str] = None, superuser: bool = False
    ) -> Awaitable[Optional[str]]:
        """Adds a user (superusers only); without a password, returns its new token (the only
        time it is seen)."""
    def remove_user(self, name: str) -> Awaitable[int]:
        """Removes a user and its ACLs; returns how many ACLs went."""
    def list_users(self) -> Awaitable[list[UserInfo]]:
        """Every user (superusers only)."""
    def grant_acl(
        self,
        principal: str,
        operation: Literal["read", "write", "admin"],
        resource_type: Literal["topic", "group", "plugin", "pipeline"],
        pattern: str,
    ) -> Awaitable[None]:
        """Lets `principal` (a user, or "*") do `operation` on resources matching `pattern`
        (a name, a prefix and "*", or "*")."""
    def revoke_acl(
        self,
        principal: str,
        operation: Literal["read", "write", "admin"],
        resource_type: Literal["topic", "group", "plugin", "pipeline"],
        pattern: str,
    ) -> Awaitable[None]:
        """Takes back a grant (`UserError` if it was not granted)."""
    def list_acls(self, principal: Optional[str] = None) -> Awaitable[list[Acl]]:
        """Every ACL, or `principal`'s (superusers only)."""
    def producer(
        self,
        linger_ms: int = 5,
        batch_bytes: Optional[int] = None,
        buffer_bytes: Optional[int] = None,
        compression: Optional[Literal["none", "lz4", "zstd"]] = None,
        delivery_timeout_ms: Optional[int] = None,
        idempotent: bool = True,
        acks: Optional[Union[Literal["all", "leader"], int]] = None,
        on_delivery: Optional[_DeliveryCallback] = None,
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
        on_delivery: Optional[_DeliveryCallback] = None,
    ) -> Awaitable[DeliveryHandle]:
        """Buffers one record; completes at once unless the buffer is full, with the record's
        `DeliveryHandle` (await it for the `RecordMetadata`). Delivery errors also raise in
        the next `flush()`."""
    def poll(self) -> int:
        """Runs the callbacks of records acknowledged (or failed) so far; returns how many."""
    def flush(self) -> Awaitable[None]:
        """Sends everything buffered, waits for the acknowledgements and runs their callbacks."""
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
    def poll_batch(
        self, max_records: int = 500, timeout: Optional[float] = None
    ) -> Awaitable[list[Record]]:
        """Up to `max_records` records (see `Consumer.poll_batch`)."""
    def seek(self, partition: int, offset: Union[int, datetime.datetime]) -> Awaitable[None]:
        """The next record read from `partition` is at `offset`, or the first at or after a
        time."""
    def pause(self, partitions: Sequence[int]) -> None:
        """Stops fetching these partitions until `resume` (the consumer must be open)."""
    def resume(self, partitions: Sequence[int]) -> None:
        """Fetches paused partitions again from where they were."""
    def paused(self) -> list[int]:
        """The partitions paused now."""
    def offsets_for_times(self, timestamps: Mapping[int, _Time]) -> Awaitable[dict[int, int]]:
        """Per partition, the first offset at or after the time given for it."""
    def committed(self) -> Awaitable[dict[int, Optional[int]]]:
        """The group's committed offsets of this topic (None: never committed)."""
    def commit(self, offsets: Optional[Mapping[int, int]] = None) -> Awaitable[None]:
        """Commits the positions reached, or `offsets` (group consumers)."""
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
