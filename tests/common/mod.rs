//! Shared helpers: run the real `oql-sync` binary against a fresh config dir and store.

#![allow(dead_code)]

pub mod common_room_crm;
pub mod crash;
pub mod emulator;
pub mod github_api;
pub mod hubspot_crm;
pub mod moto;
pub mod salesforce_crm;
pub mod scarf_api;
pub mod slack_api;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    /// A fresh, empty config dir; its store is created on first use.
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Runs with extra environment variables (tokens for emulated APIs).
    pub fn run_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let out: Output = self
            .command(args)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// The command line of a run, to spawn (and kill) by hand.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oql-sync"));
        c.arg("--config-dir").arg(self.dir.path()).args(args).env_remove("OQL_DB").env_remove("RUST_LOG");
        c
    }

    /// A run in the background with these variables, its output discarded: for tests
    /// that kill it at a chosen point.
    pub fn spawn_quiet(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Child {
        let mut c = self.command(args);
        c.envs(envs.iter().copied()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c.spawn().unwrap()
    }

    /// Runs and insists on success.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "oql-sync {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }

    pub fn companies_json(&self, as_of: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["companies", "--as-of", as_of, "--format", "json"])).unwrap()
    }
}

/// A GET of one of the daemon's endpoints: status and body, or None while it is not up.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.ok()?))
    })
}

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}
