//! A source's plugin chain: the records it read go through the broker's plugins
//! (`Plugins.Transform`, the same plugins as consume-time chains) before they are produced.

use weir::Client;

use crate::config::PluginUse;
use crate::error::ConnectError;
use crate::record::SourceRecord;

/// A source's chain, or none.
pub struct Transform {
    chain: Option<weir::Transformer>,
}

impl Transform {
    /// Opens the chain at the broker (bad names or params fail here).
    pub async fn open(client: &Client, plugins: &[PluginUse]) -> Result<Self, ConnectError> {
        if plugins.is_empty() {
            return Ok(Self { chain: None });
        }
        let uses = plugins
            .iter()
            .map(|p| weir::PluginUse {
                name: p.name().to_string(),
                params: p.params_json(),
            })
            .collect();
        Ok(Self {
            chain: Some(client.transformer(uses).await?),
        })
    }

    /// The records to produce for `records`, in order (without a chain: the same ones).
    pub async fn apply(
        &mut self,
        records: Vec<SourceRecord>,
    ) -> Result<Vec<weir::Record>, ConnectError> {
        let now = weir::now_ms();
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| weir::Record {
                offset: i as u64,
                timestamp: now,
                key: r.key,
                value: r.value,
                headers: Vec::new(),
            })
            .collect();
        match &mut self.chain {
            None => Ok(records),
            Some(chain) => Ok(chain.apply(records).await?),
        }
    }
}
