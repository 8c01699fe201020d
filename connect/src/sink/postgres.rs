//! The PostgreSQL sink: upserts each record (a JSON object) as a row, by the `key` columns, so
//! a record delivered again writes the same row again.
//!
//! One statement per batch: the batch goes to the server as one JSON array, turned into rows
//! of the table's own types by `json_populate_recordset` (so `"2026-11-26T10:00:00Z"` lands
//! in a `timestamptz`, `12.5` in a `numeric`), deduplicated by key keeping the last, and
//! written with `INSERT ... ON CONFLICT (key) DO UPDATE`. Each column is filled from the JSON
//! field of the same name: `columns` when given (a missing field writes NULL), else the
//! fields the batch's records have that the table has (other fields are ignored). Records
//! that are not JSON objects, or lack a key field, are skipped and counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::{Client, Statement};
use weir::ConsumerRecord;

use super::Writer;
use crate::config::PostgresSink;
use crate::error::ConnectError;
use crate::postgres::{self, Table, ident};

/// Whether table `$1` has a primary key or unique index (not partial, no expressions) on
/// exactly the columns `$2`: what `ON CONFLICT ($2)` needs.
const UNIQUE_KEY_SQL: &str = "SELECT EXISTS ( \
      SELECT 1 FROM pg_index i \
      WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indpred IS NULL \
        AND NOT 0 = ANY (i.indkey::int2[]) \
        AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
             WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) \
          = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k))";

/// Most upserts (one per set of columns written) kept prepared.
const MAX_PREPARED: usize = 64;

fn not_open() -> ConnectError {
    ConnectError::State("the PostgreSQL sink is not open".into())
}

/// A record's fields, each as its JSON text. A missing field is NULL in the row.
type Row = BTreeMap<String, Box<RawValue>>;

/// The rows as one JSON array (the statement's parameter), fields written as they came.
fn json_array(rows: &[Row]) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        out.push_str(if i == 0 { "{" } else { ",{" });
        for (j, (name, value)) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(name.clone()).to_string());
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// The name the batch's row numbers get in the statement (not a column of the table).
const ORDINAL: &str = "weir_connect_ordinal";

pub struct PostgresWriter {
    config: PostgresSink,
    connector: String,
    client: Option<Client>,
    /// Shared with each write (which also borrows the writer mutably to prepare).
    table: Option<Arc<Table>>,
    /// Prepared upserts by the columns they write.
    statements: HashMap<Vec<String>, Statement>,
}

impl PostgresWriter {
    pub fn new(config: &PostgresSink, connector: &str) -> Self {
        Self {
            config: config.clone(),
            connector: connector.to_string(),
            client: None,
            table: None,
            statements: HashMap::new(),
        }
    }

    /// The row a record becomes (each field's JSON text as the record has it), or why it
    /// cannot be one.
    fn row(&self, table: &Table, record: &ConsumerRecord) -> Result<Row, String> {
        let Ok(mut fields) = serde_json::from_slice::<Row>(&record.value) else {
            return Err("the value is not a JSON object".to_string());
        };
        if let Some(k) = self
            .config
            .key
            .iter()
            .find(|k| fields.get(*k).is_none_or(|v| v.get() == "null"))
        {
            return Err(format!("the key field {k:?} is missing"));
        }
        if self.config.columns.is_empty() {
            fields.retain(|name, _| table.has_column(name));
            Ok(fields)
        } else {
            Ok(self
                .config
                .columns
                .iter()
                .filter_map(|c| Some((c.clone(), fields.remove(c)?)))
                .collect())
        }
    }

    /// The upsert writing `columns` (in the table's order), prepared once.
    async fn statement(&mut self, columns: Vec<String>) -> Result<Statement, ConnectError> {
        if let Some(s) = self.statements.get(&columns) {
            return Ok(s.clone());
        }
        let (Some(client), Some(table)) = (&self.client, &self.table) else {
            return Err(not_open());
        };
        let sql = upsert_sql(table, &self.config.key, &columns);
        let statement = client.prepare(&sql).await.map_err(|e| {
            postgres::error(&format!("cannot prepare the upsert into {}", table.sql), &e)
        })?;
        if self.statements.len() >= MAX_PREPARED {
            // Records with ever-changing sets of fields: start over rather than grow.
            self.statements.clear();
        }
        self.statements.insert(columns, statement.clone());
        Ok(statement)
    }
}

/// `INSERT INTO table (columns) <the batch's rows, last per key> ON CONFLICT (key) DO UPDATE`.
fn upsert_sql(table: &Table, key: &[String], columns: &[String]) -> String {
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| ident(n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all: Vec<String> = table.columns.iter().map(|(c, _)| ident(c)).collect();
    let keys = list(key);
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {table} ({cols}) \
         SELECT {cols} FROM ( \
           SELECT DISTINCT ON ({keys}) {cols} \
           FROM json_populate_recordset(NULL::{table}, $1::text::json) \
             WITH ORDINALITY AS r({all}, {ord}) \
           ORDER BY {keys}, {ord} DESC \
         ) AS batch \
         ON CONFLICT ({keys}) DO {action}",
        table = table.sql,
        cols = list(columns),
        all = all.join(", "),
        ord = ident(ORDINAL),
    )
}

impl Writer for PostgresWriter {
    async fn open(&mut self) -> Result<BTreeMap<u32, u64>, ConnectError> {
        let client = postgres::connect(&self.config.url, &self.connector).await?;
        let table = postgres::table(&client, &self.config.table).await?;
        for c in self.config.key.iter().chain(&self.config.columns) {
            table.column_type(c)?;
        }
        let columns = &self.config.columns;
        if !columns.is_empty()
            && let Some(k) = self.config.key.iter().find(|k| !columns.contains(k))
        {
            return Err(ConnectError::External(format!(
                "the key column {k:?} must be one of `columns`"
            )));
        }
        let unique: bool = client
            .query_one(UNIQUE_KEY_SQL, &[&table.sql, &self.config.key])
            .await
            .map_err(|e| postgres::error(&format!("table {}", table.sql), &e))?
            .get(0);
        if !unique {
            let key = self.config.key.join(", ");
            return Err(ConnectError::External(format!(
                "table {} has no primary key or unique index on ({key}), which the upsert \
                 needs (e.g. CREATE UNIQUE INDEX ON {} ({key}))",
                table.sql, table.sql
            )));
        }
        self.client = Some(client);
        self.table = Some(Arc::new(table));
        self.statements.clear();
        // Columns of the wrong kind for the statement fail here rather than at the first write.
        let columns = if self.config.columns.is_empty() {
            self.config.key.clone()
        } else {
            self.config.columns.clone()
        };
        self.statement(columns).await?;
        Ok(BTreeMap::new())
    }

    async fn write(
        &mut self,
        records: &[ConsumerRecord],
        _positions: &BTreeMap<u32, u64>,
    ) -> Result<u64, ConnectError> {
        let Some(table) = self.table.clone() else {
            return Err(not_open());
        };
        let mut rows = Vec::with_capacity(records.len());
        let mut skipped = 0;
        for r in records {
            match self.row(&table, r) {
                Ok(row) => rows.push(row),
                Err(why) => {
                    skipped += 1;
                    tracing::warn!(connector = %self.connector, partition = r.partition, offset = r.offset, %why, "skipping a record");
                }
            }
        }
        if rows.is_empty() {
            return Ok(skipped);
        }
        // The columns this batch writes, in the table's order.
        let columns: Vec<String> = if self.config.columns.is_empty() {
            table
                .columns
                .iter()
                .map(|(c, _)| c)
                .filter(|c| rows.iter().any(|r| r.contains_key(*c)))
                .cloned()
                .collect()
        } else {
            self.config.columns.clone()
        };
        let statement = self.statement(columns).await?;
        let batch = json_array(&rows);
        let client = self.client.as_ref().ok_or_else(not_open)?;
        client
            .execute(&statement, &[&batch])
            .await
            .map_err(|e| postgres::error(&format!("upsert into {}", table.sql), &e))?;
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pass_through_as_written() {
        let rows: Vec<Row> = [
            r#"{"id": 1, "amount": 12345678901234567.89, "n\"ame": "x"}"#,
            r#"{"id": 2}"#,
        ]
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
        assert_eq!(
            json_array(&rows),
            r#"[{"amount":12345678901234567.89,"id":1,"n\"ame":"x"},{"id":2}]"#
        );
    }

    #[test]
    fn the_upsert_dedupes_by_key_and_updates_only_the_other_columns() {
        let table = Table {
            sql: "public.orders".into(),
            columns: vec![
                ("id".into(), "integer".into()),
                ("status".into(), "text".into()),
                ("note".into(), "text".into()),
            ],
        };
        let sql = upsert_sql(&table, &["id".into()], &["id".into(), "status".into()]);
        assert!(sql.starts_with("INSERT INTO public.orders (\"id\", \"status\") SELECT"));
        assert!(sql.contains(
            "AS r(\"id\", \"status\", \"note\", \"weir_connect_ordinal\") ORDER BY \"id\", \"weir_connect_ordinal\" DESC"
        ));
        assert!(
            sql.ends_with("ON CONFLICT (\"id\") DO UPDATE SET \"status\" = EXCLUDED.\"status\"")
        );
        let sql = upsert_sql(&table, &["id".into()], &["id".into()]);
        assert!(sql.ends_with("ON CONFLICT (\"id\") DO NOTHING"));
    }
}
