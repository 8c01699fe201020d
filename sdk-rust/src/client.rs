//! Connection to a broker: one HTTP/2 channel shared by admin, producers and consumers.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use weir_common::limits::MAX_REQUEST_BYTES;
use weir_proto::v1::cluster_client::ClusterClient;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::log_client::LogClient;
use weir_proto::v1::pipelines_client::PipelinesClient;
use weir_proto::v1::plugins_client::PluginsClient;
use weir_proto::v1::topics_client::TopicsClient;

use crate::admin::Admin;
use crate::consumer::{Consumer, ConsumerConfig};
use crate::error::{Error, Result};
use crate::producer::{Producer, ProducerConfig};

/// Default broker address.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9292";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// A connection to Weir. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    addr: String,
    channel: Channel,
}

fn endpoint(addr: &str) -> Result<Endpoint> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let ep = Endpoint::from_shared(uri).map_err(|e| Error::Connect {
        addr: addr.into(),
        message: e.to_string(),
    })?;
    Ok(ep
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES))
}

impl Client {
    /// Connects to the first reachable broker of `addrs`, a comma-separated list of
    /// `HOST:PORT` (bootstrap addresses).
    pub async fn connect(addrs: impl AsRef<str>) -> Result<Self> {
        let mut last = Error::Connect {
            addr: addrs.as_ref().into(),
            message: "no address given".into(),
        };
        for addr in addrs
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match endpoint(addr)?.connect().await {
                Ok(channel) => {
                    return Ok(Self {
                        addr: addr.to_string(),
                        channel,
                    });
                }
                Err(e) => {
                    let mut message = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        message = format!("{message}: {s}");
                        src = s.source();
                    }
                    last = Error::Connect {
                        addr: addr.to_string(),
                        message,
                    };
                }
            }
        }
        Err(last)
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn topics_rpc(&self) -> TopicsClient<Channel> {
        TopicsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES)
    }

    pub(crate) fn cluster_rpc(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    pub(crate) fn log_rpc(&self) -> LogClient<Channel> {
        LogClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES)
    }

    pub(crate) fn groups_rpc(&self) -> GroupsClient<Channel> {
        GroupsClient::new(self.channel.clone())
    }

    pub(crate) fn plugins_rpc(&self) -> PluginsClient<Channel> {
        PluginsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_REQUEST_BYTES)
    }

    pub(crate) fn pipelines_rpc(&self) -> PipelinesClient<Channel> {
        PipelinesClient::new(self.channel.clone())
    }

    /// Topic administration.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// A batching producer (see [`ProducerConfig`]).
    pub fn producer(&self, config: ProducerConfig) -> Producer {
        Producer::new(self.clone(), config)
    }

    /// A consumer of `topic` (all partitions unless the config names some).
    pub async fn consumer(&self, topic: &str, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::open(self.clone(), topic, config).await
    }
}
