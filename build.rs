//! Puts the commit the binary was built from into `--version` (and the metrics'
//! build info): `OQL_COMMIT` from the environment (container builds have no .git), else
//! `git rev-parse`, else "unknown".
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OQL_COMMIT");
    // Where git keeps them: in a worktree `.git` is a file, HEAD is the worktree's own
    // and the branches are in the main repository's directory.
    for what in ["HEAD", "refs/heads", "packed-refs"] {
        let path = Command::new("git").args(["rev-parse", "--git-path", what]).output().ok().filter(|o| o.status.success());
        let path = path.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_else(|| format!(".git/{what}"));
        // A path that does not exist would run this script on every build.
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("OQL_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|c| !c.is_empty())
    });
    println!("cargo:rustc-env=OQL_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
