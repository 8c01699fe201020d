//! The runner's state directory: one JSON file per connector with its position, written
//! atomically and durably (temp file, fsync, rename, fsync of the directory), so a `kill -9`
//! leaves either the old or the new position, never a torn one. One runner per directory:
//! it holds an exclusive lock on `lock` while it runs (which is also how `weir connect status`
//! tells a running runner from a stopped one).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ConnectError;

const LOCK_FILE: &str = "lock";

/// An open, locked state directory.
pub struct StateDir {
    dir: PathBuf,
    /// Held (locked) for the life of the runner.
    _lock: File,
}

impl StateDir {
    /// Creates (if needed) and locks `dir`; fails if another runner holds it.
    pub fn open(dir: &Path) -> Result<Self, ConnectError> {
        std::fs::create_dir_all(dir).map_err(|e| ConnectError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ConnectError::io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ConnectError::Busy(dir.to_path_buf()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ConnectError::io(&path, e)),
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state saved under `name`, if any.
    pub fn load<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConnectError> {
        load(&self.dir, name)
    }

    /// Replaces the state saved under `name`, durably.
    pub fn save<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ConnectError> {
        let path = self.dir.join(format!("{name}.json"));
        let tmp = self.dir.join(format!(".{name}.json.tmp"));
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| ConnectError::State(format!("cannot encode {name}: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| ConnectError::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_data())
            .map_err(|e| ConnectError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ConnectError::io(&path, e))?;
        sync_dir(&self.dir)
    }
}

/// Reads `<dir>/<name>.json` (`None` if there is none), without taking the lock.
pub fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, ConnectError> {
    let path = dir.join(format!("{name}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ConnectError::State(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConnectError::io(&path, e)),
    }
}

/// Whether a runner holds `dir` right now.
pub fn is_running(dir: &Path) -> bool {
    let Ok(f) = OpenOptions::new().write(true).open(dir.join(LOCK_FILE)) else {
        return false;
    };
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Makes a rename or file creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), ConnectError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ConnectError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_is_read_back_and_the_directory_has_one_runner() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let state = StateDir::open(&dir).unwrap();
        assert!(is_running(&dir));
        assert!(matches!(StateDir::open(&dir), Err(ConnectError::Busy(_))));
        assert_eq!(state.load::<Vec<u32>>("a").unwrap(), None);
        state.save("a", &vec![1u32, 2]).unwrap();
        state.save("a", &vec![3u32]).unwrap();
        assert_eq!(state.load::<Vec<u32>>("a").unwrap(), Some(vec![3]));
        std::fs::write(dir.join("b.json"), b"{").unwrap();
        assert!(matches!(
            state.load::<Vec<u32>>("b"),
            Err(ConnectError::State(_))
        ));
        drop(state);
        assert!(!is_running(&dir));
        StateDir::open(&dir).unwrap();
    }
}
