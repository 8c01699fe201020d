//! What the PostgreSQL source and sink share: connecting, naming tables and columns safely in
//! SQL, and errors that say what the server said.

use tokio_postgres::{Client, NoTls};
use weir_common::error::with_causes;

use crate::error::ConnectError;

/// A table as the server resolved it, with its columns in order.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name as SQL (schema-qualified and quoted where needed), from `regclass`.
    pub sql: String,
    /// `(name, type)` of every column, in order; the type as `format_type` writes it.
    pub columns: Vec<(String, String)>,
}

impl Table {
    /// The type of column `name`, or an error naming the table's columns.
    pub fn column_type(&self, name: &str) -> Result<&str, ConnectError> {
        self.columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t.as_str())
            .ok_or_else(|| {
                let names: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
                ConnectError::External(format!(
                    "table {} has no column {name:?} (its columns: {})",
                    self.sql,
                    names.join(", ")
                ))
            })
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.columns.iter().any(|(c, _)| c == name)
    }
}

/// Connects to `url`; the connection is driven by a task of its own, which ends with it.
pub async fn connect(url: &str, connector: &str) -> Result<Client, ConnectError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| error(&format!("cannot connect to {}", redact(url)), &e))?;
    let connector = connector.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%connector, error = %describe(&e), "PostgreSQL connection lost");
        }
    });
    Ok(client)
}

/// Resolves `table` (SQL syntax: `orders`, `sales.orders`, `"Orders"`) and its columns.
pub async fn table(client: &Client, table: &str) -> Result<Table, ConnectError> {
    let rows = client
        .query(
            "SELECT $1::text::regclass::text, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod) \
             FROM pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table],
        )
        .await
        .map_err(|e| error(&format!("table {table:?}"), &e))?;
    let sql = rows
        .first()
        .map(|r| r.get::<_, String>(0))
        .ok_or_else(|| ConnectError::External(format!("table {table:?} has no columns")))?;
    Ok(Table {
        sql,
        columns: rows.iter().map(|r| (r.get(1), r.get(2))).collect(),
    })
}

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL error as the server put it (message, detail, hint), after `context`.
pub fn error(context: &str, e: &tokio_postgres::Error) -> ConnectError {
    ConnectError::External(format!("PostgreSQL: {context}: {}", describe(e)))
}

fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        // Connection-level errors keep their cause in `source`.
        return with_causes(e);
    };
    let mut text = db.message().to_string();
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// A connection URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    match auth.and_then(|a| a.split_once(':')) {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_passwords_kept_out_of_messages() {
        assert_eq!(ident("id"), "\"id\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("host=db user=app"), "host=db user=app");
    }
}
