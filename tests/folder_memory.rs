//! A watched folder's memory does not grow with its files: a poll hashes and reads a
//! file as a stream. Its own test binary, so the peak RSS `wait4` reports is the poll's
//! alone.

mod common;

use std::io::Write;
use std::time::Duration;

use common::Env;

/// Runs a command to completion; its exit code and peak resident set size in bytes.
fn run_measured(cmd: &mut std::process::Command) -> (i32, u64) {
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct wait4 fills; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_poll_holds_no_file_in_memory() {
    const FILE_BYTES: usize = 128 << 20;
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: drops\nsettle: 0s\n");
    let path = env.write("drops/big.ndjson", "{\"source\":\"web\",\"id\":\"1\",\"kind\":\"download\",\"occurred_at\":\"2026-10-01T10:00:00Z\",\"company_domain\":\"acme.com\"}\n");
    // One line of 128 MiB: quarantined while read (too long), hashed whole after.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"pad\":\"").unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..FILE_BYTES >> 20 {
        f.write_all(&block).unwrap();
    }
    f.write_all(b"\"}\n").unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(10));
    let (code, first) = run_measured(&mut env.command(&["poll"]));
    assert_eq!(code, 0);
    assert_eq!(common::crash::scalar(&env.path().join("oql.db"), "SELECT COUNT(*) FROM activities"), 1);
    // A touched file is hashed again (its content may have changed), still as a stream.
    let touched = std::fs::File::options().append(true).open(&path).unwrap();
    touched.set_modified(std::time::SystemTime::now()).unwrap();
    let (code, second) = run_measured(&mut env.command(&["poll"]));
    assert_eq!(code, 0);
    for peak in [first, second] {
        assert!(peak < (FILE_BYTES as u64) * 3 / 4, "peak RSS {} MiB for a {} MiB file", peak >> 20, FILE_BYTES >> 20);
    }
    eprintln!("peak RSS: {} MiB reading, {} MiB hashing a {} MiB file", first >> 20, second >> 20, FILE_BYTES >> 20);
}
