//! Finds the git commit being built: `WEIR_GIT_COMMIT` when set (a source tarball, a
//! container build without `.git`), else `git rev-parse` in this checkout, else `unknown`.
//! Reruns when HEAD moves, so a new commit is in the next build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_GIT_COMMIT");
    let commit = match std::env::var("WEIR_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            // HEAD, the branch it names and packed refs: what moves when a commit is made.
            for file in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", file]) {
                    watch(&p);
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                watch(&p);
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=WEIR_GIT_COMMIT={commit}");
}

/// Reruns this script when `path` (relative to this crate's directory) changes.
fn watch(path: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
