//! What a Weir binary was built from: `weir-broker --version`, `weir --version`, the
//! `version` line of `weir status` and the `weir_build_info` metric all say this.
//!
//! Its own crate, so that a new commit rebuilds only the crates that name it (the broker and
//! the CLI), not the ones below them.

/// The release (the workspace's version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit (12 hex digits), or what `WEIR_GIT_COMMIT` said at build time, or
/// `unknown` (built outside a git checkout).
pub const COMMIT: &str = env!("WEIR_GIT_COMMIT");

/// `VERSION (COMMIT)`: what `--version` prints after the binary's name (SPEC.md).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WEIR_GIT_COMMIT"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_long_version_is_the_version_and_the_commit() {
        assert_eq!(LONG_VERSION, format!("{VERSION} ({COMMIT})"));
        assert!(!COMMIT.is_empty());
    }
}
