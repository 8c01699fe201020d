//! Where Kafka clients reach each cluster member: every member announces its Kafka address
//! through the metadata quorum (`Command::AdvertiseKafka`), so any member's Kafka listener
//! can name every partition's leader and every group's coordinator.

use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use crate::cluster::peers::NodeId;
use crate::cluster::state::Command;

/// How long a member waits before announcing its Kafka address again after a failed try
/// (no controller yet, say).
const ADVERTISE_RETRY: Duration = Duration::from_secs(1);

/// A cluster member as Kafka clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMember {
    pub id: NodeId,
    /// `HOST:PORT`.
    pub addr: String,
}

/// The cluster as the Kafka listener describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaCluster {
    /// Members with a Kafka listener.
    pub members: Vec<KafkaMember>,
    /// The member that is the metadata controller, if one is known.
    pub controller: Option<NodeId>,
    pub cluster_id: Option<String>,
}

impl Broker {
    /// Cluster mode: announces `addr` as this member's Kafka address (`None`: it serves no
    /// Kafka listener) until the metadata says so, and again whenever it stops saying so.
    /// Standalone it does nothing.
    pub fn advertise_kafka(self: &Arc<Self>, addr: Option<String>) {
        let Some(c) = self.cluster().cloned() else {
            return;
        };
        tokio::spawn(async move {
            let me = c.node_id();
            let mut metadata = c.metadata();
            loop {
                let announced = metadata
                    .borrow_and_update()
                    .brokers
                    .get(&me)
                    .map(|b| b.kafka.clone());
                if announced.as_ref() == Some(&addr) {
                    if metadata.changed().await.is_err() {
                        return; // shutting down
                    }
                    continue;
                }
                let cmd = Command::AdvertiseKafka {
                    id: me,
                    kafka: addr.clone(),
                };
                if let Err(e) = c.propose(cmd).await {
                    tracing::debug!(error = %e, "cannot announce the Kafka address yet");
                    tokio::time::sleep(ADVERTISE_RETRY).await;
                }
            }
        });
    }

    /// Cluster mode: the members Kafka clients can reach, the controller and the cluster's
    /// id (`None` standalone).
    pub fn kafka_cluster(&self) -> Option<KafkaCluster> {
        let c = self.cluster()?;
        let m = Arc::clone(&c.metadata().borrow());
        Some(KafkaCluster {
            members: m
                .brokers
                .iter()
                .filter_map(|(id, b)| {
                    Some(KafkaMember {
                        id: *id,
                        addr: b.kafka.clone()?,
                    })
                })
                .collect(),
            controller: c.view().controller,
            cluster_id: m.cluster_id.clone(),
        })
    }
}
