//! `weir user add|list|remove|whoami`: users of a broker run with `--auth`.

use std::io::{BufRead, Write};

use anyhow::Context;
use clap::Subcommand;
use weir::Client;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user (superusers only). With --password-stdin it gets the password read from
    /// stdin's first line; without, a new token, printed on stdout (the only time it is shown).
    Add {
        name: String,
        /// Read the user's password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// May do everything, users and ACLs included.
        #[arg(long)]
        superuser: bool,
    },
    /// One line per user: NAME<TAB>CREDENTIAL<TAB>ROLE, CREDENTIAL being password or token and
    /// ROLE superuser or user (superusers only).
    List,
    /// Remove a user and its ACLs (superusers only; not the last superuser).
    Remove { name: String },
    /// Who the broker takes you for: NAME<TAB>ROLE (`-` and superuser without --auth).
    Whoami,
}

/// The first line of stdin, without its line ending.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    Ok(password)
}

pub async fn run(client: &Client, cmd: UserCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
            superuser,
        } => {
            let password = password_stdin.then(password_from_stdin).transpose()?;
            if let Some(token) = admin
                .create_user(&name, password.as_deref(), superuser)
                .await?
            {
                writeln!(out, "{token}")?;
            }
        }
        UserCommand::List => {
            for u in admin.list_users().await? {
                let role = if u.superuser { "superuser" } else { "user" };
                writeln!(out, "{}\t{}\t{role}", u.name, u.credential)?;
            }
        }
        UserCommand::Remove { name } => {
            let acls = admin.delete_user(&name).await?;
            if acls > 0 {
                eprintln!("removed user {name} and its {acls} ACL(s)");
            }
        }
        UserCommand::Whoami => {
            let me = admin.whoami().await?;
            let name = if me.name.is_empty() { "-" } else { &me.name };
            let role = if me.superuser { "superuser" } else { "user" };
            writeln!(out, "{name}\t{role}")?;
        }
    }
    out.flush()?;
    Ok(())
}
