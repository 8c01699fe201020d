//! `weir acl grant|revoke|list`: who may do what (superusers only).

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use weir::{Acl, Client};

#[derive(Clone, Copy, ValueEnum)]
pub enum Operation {
    /// Topic: fetch, consume. Group: join, commit, describe. Plugin: use in a chain.
    /// Pipeline: describe.
    Read,
    /// Topic: produce.
    Write,
    /// Create, delete, reset, register; implies read and write.
    Admin,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Admin => "admin",
        }
    }
}

/// What an ACL names: one resource type and a pattern (a name, a prefix followed by `*`, or
/// `*` for all).
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct On {
    #[arg(long, value_name = "PATTERN")]
    topic: Option<String>,
    #[arg(long, value_name = "PATTERN")]
    group: Option<String>,
    #[arg(long, value_name = "PATTERN")]
    plugin: Option<String>,
    #[arg(long, value_name = "PATTERN")]
    pipeline: Option<String>,
}

impl On {
    fn parts(self) -> (&'static str, String) {
        match self {
            On { topic: Some(p), .. } => ("topic", p),
            On { group: Some(p), .. } => ("group", p),
            On {
                plugin: Some(p), ..
            } => ("plugin", p),
            On {
                pipeline: Some(p), ..
            } => ("pipeline", p),
            // clap requires exactly one.
            On { .. } => ("topic", String::new()),
        }
    }
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Let PRINCIPAL (a user, or `*` for every user) do OPERATION on what --topic, --group,
    /// --plugin or --pipeline names.
    Grant {
        principal: String,
        #[arg(value_enum)]
        operation: Operation,
        #[command(flatten)]
        on: On,
    },
    /// Take back a grant (the same arguments as it was granted with).
    Revoke {
        principal: String,
        #[arg(value_enum)]
        operation: Operation,
        #[command(flatten)]
        on: On,
    },
    /// One line per ACL: PRINCIPAL<TAB>OPERATION<TAB>TYPE<TAB>PATTERN.
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
    },
}

fn acl(principal: String, operation: Operation, on: On) -> Acl {
    let (kind, pattern) = on.parts();
    Acl::new(principal, operation.as_str(), kind, pattern)
}

pub async fn run(client: &Client, cmd: AclCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    match cmd {
        AclCommand::Grant {
            principal,
            operation,
            on,
        } => admin.grant_acl(&acl(principal, operation, on)).await?,
        AclCommand::Revoke {
            principal,
            operation,
            on,
        } => admin.revoke_acl(&acl(principal, operation, on)).await?,
        AclCommand::List { principal } => {
            let mut out = std::io::stdout().lock();
            for a in admin.list_acls(principal.as_deref()).await? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    a.principal, a.operation, a.resource_type, a.pattern
                )?;
            }
            out.flush()?;
        }
    }
    Ok(())
}
