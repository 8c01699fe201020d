"""Python SDK for Weir: a thin layer over the Rust SDK (batching, partitioner, groups).

    import weir
    client = weir.Client("127.0.0.1:9292")
    client.create_topic("orders", partitions=3)
    with client.producer(linger_ms=5) as p:
        p.send("orders", b"value", key=b"k", headers={"h": b"v"})
    for rec in client.consumer("orders", start="earliest", idle_timeout_ms=1000):
        print(rec.partition, rec.offset, rec.value)
"""

from . import aio
from ._weir import (
    Acl,
    Client,
    Consumer,
    DeliveryHandle,
    GroupDescription,
    GroupError,
    GroupMember,
    GroupPartition,
    GroupSummary,
    InvalidArgument,
    OffsetOutOfRange,
    PartitionInfo,
    PermissionDenied,
    PipelineError,
    PipelineInfo,
    PipelinePartition,
    PluginError,
    PluginInfo,
    Producer,
    Record,
    RecordMetadata,
    TopicDescription,
    TopicExists,
    TopicNotFound,
    Unauthenticated,
    Unavailable,
    UserError,
    UserInfo,
    ViewInfo,
    WeirError,
    WhoAmI,
    partition_for_key,
)

__all__ = [
    "aio",
    "Acl",
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
