//! What running a connector can fail with.

use std::path::{Path, PathBuf};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another `weir connect run` uses the state directory {0}")]
    Busy(PathBuf),
    #[error("state: {0}")]
    State(String),
    /// The external system refused or broke (a record it cannot take, a damaged output).
    #[error("{0}")]
    External(String),
    #[error(transparent)]
    Weir(#[from] weir::Error),
}

impl ConnectError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ConnectError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
