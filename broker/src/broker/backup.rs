//! Online backup (`weir admin backup --to DIR`, docs/deploy.md "Backup and restore"): a
//! consistent copy of this broker's data dir, written while it serves, that a broker started
//! with `--data-dir DIR` serves as it was when the backup began.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Broker;
use crate::blocking::blocking;
use crate::error::BrokerError;
use crate::security::BOOTSTRAP_TOKEN_FILE;

/// Where the database lives inside a data dir (and so inside a backup).
pub const DB_DIR: &str = "db";
/// A backup's description, for people: version, commit, time, node, cluster.
pub const BACKUP_MANIFEST: &str = "BACKUP";

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    /// Files in the backup and their bytes (hard links counted at full size).
    pub files: u64,
    pub bytes: u64,
    pub millis: u64,
}

impl Broker {
    /// Writes a consistent copy of the data dir into `to`, an absolute path on this broker's
    /// host that does not exist yet and whose parent does: the database as a RocksDB
    /// checkpoint (every column family at one point: each record acknowledged before the
    /// call, with the offsets, groups, plugins, pipelines, users and cluster state of that
    /// moment), the bootstrap token file if there is one, and a manifest. One backup runs at
    /// a time.
    pub async fn backup(&self, to: PathBuf) -> Result<BackupReport, BrokerError> {
        check_target(&to)?;
        if self.backup_running.swap(true, Ordering::AcqRel) {
            return Err(BrokerError::Busy("a backup is already running".into()));
        }
        // Cleared by the blocking task when it ends, not by this future: a caller that gives
        // up (the client went away) drops the future while the copy is still being written.
        let running = Running(Arc::clone(&self.backup_running));
        let (store, data_dir) = (self.store.clone(), self.data_dir.clone());
        let manifest = self.manifest();
        let dest = to.clone();
        let started = Instant::now();
        let done = blocking(move || {
            let _running = running;
            std::fs::create_dir(&dest).map_err(|e| cannot("create", &dest, &e))?;
            let written = (|| {
                store.checkpoint(&dest.join(DB_DIR))?;
                let token = data_dir.join(BOOTSTRAP_TOKEN_FILE);
                if token.exists() {
                    let copy = dest.join(BOOTSTRAP_TOKEN_FILE);
                    std::fs::copy(&token, &copy).map_err(|e| cannot("copy", &token, &e))?;
                }
                let path = dest.join(BACKUP_MANIFEST);
                std::fs::write(&path, manifest).map_err(|e| cannot("write", &path, &e))?;
                sync_dir(&dest)?;
                measure(&dest)
            })();
            if written.is_err() {
                // Nothing half-written is left to be mistaken for a backup.
                let _ = std::fs::remove_dir_all(&dest);
            }
            written
        })
        .await;
        let (files, bytes) = done?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(path = %to.display(), files, bytes, millis, "backup written");
        Ok(BackupReport {
            path: to,
            files,
            bytes,
            millis,
        })
    }

    fn manifest(&self) -> String {
        let build = self.build();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut m = format!(
            "weir-broker backup\nversion {}\ncommit {}\ntaken_at_unix_ms {unix_ms}\n",
            build.version, build.commit
        );
        if let Some(c) = self.cluster() {
            m.push_str(&format!("node_id {}\n", c.node_id()));
            if let Some(id) = c.cluster_id() {
                m.push_str(&format!("cluster_id {id}\n"));
            }
        }
        m
    }
}

/// Marks a backup as running until dropped.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The edge's checks of a backup target, before anything is written.
fn check_target(to: &Path) -> Result<(), BrokerError> {
    let bad = |why: &str| {
        BrokerError::InvalidArgument(format!("cannot back up to {}: {why}", to.display()))
    };
    if !to.is_absolute() {
        return Err(bad(
            "give an absolute path on the broker's host (it is where the broker writes)",
        ));
    }
    if to.exists() {
        return Err(bad("it exists already; name a new directory"));
    }
    match to.parent() {
        Some(parent) if parent.is_dir() => Ok(()),
        _ => Err(bad("its parent directory does not exist")),
    }
}

fn cannot(what: &str, path: &Path, e: &std::io::Error) -> BrokerError {
    BrokerError::InvalidArgument(format!("cannot {what} {}: {e}", path.display()))
}

/// Fsyncs a directory, so the names just written in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| cannot("sync", dir, &e))
}

/// Files under `dir` and their bytes.
fn measure(dir: &Path) -> Result<(u64, u64), BrokerError> {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| cannot("read", &d, &e))? {
            let entry = entry.map_err(|e| cannot("read", &d, &e))?;
            let meta = entry
                .metadata()
                .map_err(|e| cannot("read", &entry.path(), &e))?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_must_be_new_absolute_and_under_an_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = |p: &Path| check_target(p).unwrap_err().to_string();
        assert!(err(Path::new("relative/backup")).contains("absolute path"));
        assert!(err(dir.path()).contains("exists already"));
        assert!(err(&dir.path().join("no/such")).contains("parent directory does not exist"));
        check_target(&dir.path().join("new")).unwrap();
    }
}
