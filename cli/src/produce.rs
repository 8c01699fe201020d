//! `weir produce TOPIC`: one record per stdin line, through the batching producer.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use weir::{Acks, Client, Compression, Header, ProducerConfig, ProducerRecord};

/// Read buffer for stdin: big enough that a million short lines take a few reads.
const STDIN_BUFFER_BYTES: usize = 1024 * 1024;

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Send every record to this partition (default: by key hash, or spread).
    #[arg(long)]
    partition: Option<u32>,
    /// Text before the first SEP on a line is the record key.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header added to every record (repeatable).
    #[arg(long = "header", value_name = "K=V")]
    headers: Vec<String>,
    /// Compress each batch: none, lz4 or zstd.
    #[arg(long, default_value_t = Compression::None)]
    compression: Compression,
    /// When a record counts as written: `all` in-sync replicas have it, or `1` (the leader).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
}

pub(crate) fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_headers(raw: &[String]) -> anyhow::Result<Vec<Header>> {
    raw.iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Header {
                key: k.to_string(),
                value: Bytes::from(v.to_string()),
            }),
            _ => bail!("--header wants K=V, got {h:?}"),
        })
        .collect()
}

/// Splits `line` at the first `sep` into (key, value).
pub(crate) fn split_key(line: &[u8], sep: &[u8]) -> (Option<Bytes>, Bytes) {
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (
            Some(Bytes::copy_from_slice(&line[..i])),
            Bytes::copy_from_slice(&line[i + sep.len()..]),
        ),
        None => (None, Bytes::copy_from_slice(line)),
    }
}

pub async fn run(client: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    let headers = parse_headers(&args.headers)?;
    let sep = match args.key_separator.as_deref() {
        Some("") => bail!("--key-separator must not be empty"),
        other => other.map(str::as_bytes),
    };
    // Fail fast (before reading stdin) on an unknown topic or partition.
    let desc = client.admin().describe_topic(&args.topic).await?;
    if let Some(p) = args.partition.filter(|&p| p >= desc.topic.partitions) {
        bail!(
            "topic {:?} has no partition {p} (it has {})",
            args.topic,
            desc.topic.partitions
        );
    }
    let producer = client.producer(ProducerConfig {
        compression: args.compression,
        acks: args.acks,
        ..ProducerConfig::default()
    });
    let mut stdin = BufReader::with_capacity(STDIN_BUFFER_BYTES, tokio::io::stdin());
    let mut line = Vec::new();
    let mut count: u64 = 0;
    loop {
        line.clear();
        if stdin
            .read_until(b'\n', &mut line)
            .await
            .context("reading stdin")?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value) = match sep {
            Some(sep) => split_key(&line, sep),
            None => (None, Bytes::copy_from_slice(&line)),
        };
        let mut record = ProducerRecord::new(args.topic.as_str(), value);
        record.key = key;
        record.partition = args.partition;
        record.headers = headers.clone();
        // The delivery future is dropped: failures surface in flush() below.
        producer.enqueue(record).await?;
        count += 1;
    }
    producer.flush().await?;
    eprintln!("produced {count} records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_text_before_the_first_separator() {
        assert_eq!(
            split_key(b"k:v:w", b":"),
            (Some(Bytes::from("k")), Bytes::from("v:w"))
        );
        assert_eq!(split_key(b"no-sep", b":"), (None, Bytes::from("no-sep")));
        assert_eq!(
            split_key(b"::v", b"::"),
            (Some(Bytes::from("")), Bytes::from("v"))
        );
    }

    #[test]
    fn headers_need_a_name() {
        assert_eq!(parse_headers(&["a=b=c".into()]).unwrap()[0].value, "b=c");
        assert!(parse_headers(&["=x".into()]).is_err());
        assert!(parse_headers(&["novalue".into()]).is_err());
    }
}
