//! The PostgreSQL source: polls a table for rows past the last value of an increasing column
//! (`column`: a serial id, a sequence, an insertion timestamp), each row becoming a record
//! (the row as a JSON object; the key from `key_column`). Produced exactly once by the
//! replayable-source driver: the position is the last value read, so a chunk can be read
//! again up to its end.
//!
//! Rows must become visible in the column's order (one writer, or values taken at commit): a
//! row that commits later with a lower value than one already read is missed, as in Kafka
//! Connect's JDBC source in incrementing mode. A chunk never ends between rows with the same
//! value, so ties in a non-unique column are read together.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::{Chunk, Reader, SourceRecord};
use crate::config::{DEFAULT_POLL_INTERVAL_MS, PostgresSource};
use crate::error::ConnectError;
use crate::postgres::{self, ident};

/// Most rows one poll asks for.
pub const MAX_ROWS_PER_CHUNK: i64 = 10_000;

pub struct PostgresReader {
    config: PostgresSource,
    connector: String,
    client: Option<Client>,
    /// The `SELECT` reading rows after `$1` (when there is a last value), up to `$2` (when
    /// replaying), at most `$3`, filled in by [`select_sql`] at seek.
    select: Option<Select>,
    /// The last value read (as text); `None` before the first row.
    after: Option<String>,
}

struct Select {
    /// From the start / after a value; each with and without an upper bound.
    from_start: String,
    from_start_until: String,
    after: String,
    after_until: String,
}

impl PostgresReader {
    pub fn new(config: &PostgresSource, connector: &str) -> Self {
        Self {
            config: config.clone(),
            connector: connector.to_string(),
            client: None,
            select: None,
            after: None,
        }
    }

    async fn rows(
        &self,
        until: Option<&str>,
        limit: i64,
    ) -> Result<Vec<tokio_postgres::Row>, ConnectError> {
        let (Some(client), Some(select)) = (&self.client, &self.select) else {
            return Err(ConnectError::State(
                "the PostgreSQL source is not open".into(),
            ));
        };
        let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match (&self.after, &until) {
            (None, None) => (&select.from_start, vec![&limit]),
            (None, Some(u)) => (&select.from_start_until, vec![u, &limit]),
            (Some(a), None) => (&select.after, vec![a, &limit]),
            (Some(a), Some(u)) => (&select.after_until, vec![a, u, &limit]),
        };
        client
            .query(sql, &params)
            .await
            .map_err(|e| postgres::error(&format!("polling {}", self.config.table), &e))
    }
}

/// The four `SELECT`s: `row_to_json` of each row, the column's value and the key as text,
/// in the column's order.
fn select_sql(table: &str, column: &str, column_type: &str, key: Option<&str>) -> Select {
    let col = format!("r.{}", ident(column));
    let key = key.map_or("NULL".to_string(), |k| format!("(r.{})::text", ident(k)));
    let select = |lower: Option<&str>, upper: Option<&str>| {
        let mut conditions = vec![format!("{col} IS NOT NULL")];
        conditions.extend(lower.map(|p| format!("{col} > {p}::text::{column_type}")));
        conditions.extend(upper.map(|p| format!("{col} <= {p}::text::{column_type}")));
        let limit = (1 + lower.is_some() as usize + upper.is_some() as usize).to_string();
        format!(
            "SELECT row_to_json(r)::text, ({col})::text, {key} FROM {table} AS r \
             WHERE {} ORDER BY {col} LIMIT ${limit}",
            conditions.join(" AND ")
        )
    };
    Select {
        from_start: select(None, None),
        from_start_until: select(None, Some("$1")),
        after: select(Some("$1"), None),
        after_until: select(Some("$1"), Some("$2")),
    }
}

/// A polled row's `column` value, as text.
fn value_of(row: &tokio_postgres::Row) -> &str {
    row.get(1)
}

impl Reader for PostgresReader {
    async fn seek(&mut self, position: Option<&Value>) -> Result<(), ConnectError> {
        let client = postgres::connect(&self.config.url, &self.connector).await?;
        let table = postgres::table(&client, &self.config.table).await?;
        let column_type = table.column_type(&self.config.column)?.to_string();
        if let Some(k) = &self.config.key_column {
            table.column_type(k)?;
        }
        self.select = Some(select_sql(
            &table.sql,
            &self.config.column,
            &column_type,
            self.config.key_column.as_deref(),
        ));
        self.client = Some(client);
        self.after = match position {
            None => None,
            Some(p) => Some(
                p.get("after")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConnectError::State(format!("PostgreSQL source position {p}")))?
                    .to_string(),
            ),
        };
        Ok(())
    }

    async fn read(
        &mut self,
        max_bytes: usize,
        until: Option<&Value>,
    ) -> Result<Option<Chunk>, ConnectError> {
        let until = until
            .map(|u| {
                u.get("after")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| ConnectError::State(format!("PostgreSQL source position {u}")))
            })
            .transpose()?;
        // Replaying: every row up to the chunk's end, however many. Else one row more than a
        // chunk takes, which shows whether the last value goes on past it.
        let limit = if until.is_some() {
            i64::MAX
        } else {
            MAX_ROWS_PER_CHUNK + 1
        };
        let mut rows = self.rows(until.as_deref(), limit).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        if until.is_none() {
            // End on a change of value: after about `max_bytes`, and before the last value
            // of a full page (more rows of it may follow).
            let mut bytes = 0;
            let mut cut = rows.len();
            for (i, r) in rows.iter().enumerate() {
                if bytes >= max_bytes && i > 0 && value_of(r) != value_of(&rows[i - 1]) {
                    cut = i;
                    break;
                }
                bytes += r.get::<_, &str>(0).len();
            }
            let page = MAX_ROWS_PER_CHUNK as usize;
            if cut > page {
                // A full page and more: end it before the last value if that value goes on.
                let last = value_of(&rows[page - 1]);
                if value_of(&rows[page]) != last {
                    cut = page;
                } else if let Some(keep) = rows[..page].iter().rposition(|r| value_of(r) != last) {
                    cut = keep + 1;
                } else {
                    // A whole page of one value: read every row of it.
                    let last = last.to_string();
                    rows = self.rows(Some(&last), i64::MAX).await?;
                    cut = rows.len();
                }
            }
            rows.truncate(cut);
        }
        let Some(end) = rows.last().map(|r| value_of(r).to_string()) else {
            // The rows of a value read again were deleted in between.
            return Ok(None);
        };
        let records = rows
            .iter()
            .map(|r| SourceRecord {
                key: r.get::<_, Option<String>>(2).map(Bytes::from),
                value: Bytes::from(r.get::<_, String>(0)),
            })
            .collect();
        self.after = Some(end.clone());
        Ok(Some(Chunk {
            records,
            skipped: 0,
            end: json!({ "after": end }),
        }))
    }

    fn describe(&self, position: &Value) -> String {
        match position.get("after").and_then(Value::as_str) {
            Some(v) => format!("{} > {v}", self.config.column),
            None => position.to_string(),
        }
    }

    fn idle_wait(&self) -> Duration {
        Duration::from_millis(
            self.config
                .poll_interval_ms
                .unwrap_or(DEFAULT_POLL_INTERVAL_MS),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_bound_by_the_column_typed_as_the_table_has_it() {
        let s = select_sql("public.t", "id", "bigint", Some("k"));
        assert_eq!(
            s.from_start,
            "SELECT row_to_json(r)::text, (r.\"id\")::text, (r.\"k\")::text FROM public.t AS r \
             WHERE r.\"id\" IS NOT NULL ORDER BY r.\"id\" LIMIT $1"
        );
        assert!(s.after_until.contains(
            "r.\"id\" > $1::text::bigint AND r.\"id\" <= $2::text::bigint ORDER BY r.\"id\" LIMIT $3"
        ));
        assert!(s.from_start_until.contains("r.\"id\" <= $1::text::bigint"));
        let s = select_sql("t", "at", "timestamp with time zone", None);
        assert!(
            s.after
                .starts_with("SELECT row_to_json(r)::text, (r.\"at\")::text, NULL FROM")
        );
    }
}
