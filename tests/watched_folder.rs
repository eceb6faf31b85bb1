//! Watched export folders fed the way real exporters write files: rows that arrive
//! while a poll looks, files that grow, gzip, unreadable neighbours, and whatever else
//! sits in the folder. `oql-sync poll`, the real binary, against a fresh store.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Env, Run};

/// An export connector watching `drops/` with the given settle interval.
fn watch(env: &Env, settle: &str) {
    env.write("connectors/drops.yaml", format!("name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: drops\nsettle: {settle}\n"));
}

fn poll(env: &Env) -> Run {
    env.run(&["poll"])
}

fn line(id: &str, domain: &str) -> String {
    format!("{{\"source\":\"web\",\"id\":\"{id}\",\"kind\":\"download\",\"occurred_at\":\"2026-10-01T10:00:00Z\",\"company_domain\":\"{domain}\"}}\n")
}

fn rows(db: &Path, sql: &'static str) -> Vec<String> {
    common::crash::texts(db, sql)
}

fn domains(env: &Env) -> Vec<String> {
    rows(&env.path().join("oql.db"), "SELECT id || ' ' || coalesce(company_domain, '-') FROM activities ORDER BY id")
}

/// Appends `parts` to a file one by one, `gap` apart, from another thread: an exporter
/// still writing while a poll runs.
fn write_slowly(path: &Path, parts: &'static [&'static str], gap: Duration) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        for part in parts {
            std::thread::sleep(gap);
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(part.as_bytes()).unwrap();
        }
    })
}

#[test]
fn a_csv_still_being_written_is_read_once_complete_and_never_cut() {
    let env = Env::new();
    watch(&env, "1s");
    // The exporter has written `company-133.c` of `company-133.com` when the poll looks.
    let path = env.write(
        "drops/export.csv",
        "id,source,kind,occurred_at,company_domain\nc1,web,download,2026-10-01T10:00:00Z,acme.com\nc2,web,download,2026-10-01T10:00:00Z,company-133.c",
    );
    let writer = write_slowly(&path, &["o", "m", "\n"], Duration::from_millis(400));
    let first = poll(&env);
    writer.join().unwrap();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("export.csv: still being written"), "a changing CSV waits: {}", first.stdout);
    let second = poll(&env);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(second.stdout.contains("export.csv (csv): 2 imported"), "{}", second.stdout);
    assert_eq!(domains(&env), ["c1 acme.com", "c2 company-133.com"]);
    assert_eq!(poll(&env).stdout, "drops: 0 fetched, 0 new activities; 0 API calls\n", "read once");
}

#[test]
fn an_ndjson_being_written_is_read_to_its_last_newline_and_resumed_there() {
    let env = Env::new();
    watch(&env, "1s");
    let cut = line("n2", "company-133.com");
    let (head, _) = cut.split_at(cut.find("company-133.c").unwrap() + "company-133.c".len());
    let path = env.write("drops/events.ndjson", line("n1", "acme.com") + head);
    let writer = write_slowly(&path, &["o", "m", "\"}\n"], Duration::from_millis(400));
    let first = poll(&env);
    writer.join().unwrap();
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("events.ndjson (ndjson): 1 imported, 0 duplicate, 0 quarantined"), "{}", first.stdout);
    assert_eq!(domains(&env), ["n1 acme.com"], "the line being written is not read");
    // Once complete, only the new line is read: n1 is not read again.
    let second = poll(&env);
    assert!(second.stdout.contains("events.ndjson (ndjson): 1 imported, 0 duplicate, 0 quarantined"), "{}", second.stdout);
    assert_eq!(domains(&env), ["n1 acme.com", "n2 company-133.com"]);
    assert!(rows(&env.path().join("oql.db"), "SELECT reason FROM quarantine").is_empty(), "no cut line quarantined");
}

#[test]
fn a_grown_file_is_read_from_its_last_complete_line_and_a_rewritten_one_whole() {
    let env = Env::new();
    watch(&env, "0s");
    let header = "id,source,kind,occurred_at,company_domain\n";
    let row = |id: &str, day: &str| format!("{id},web,download,2026-10-{day}T10:00:00Z,acme.com\n");
    env.write("drops/a.csv", format!("{header}{}{}", row("a1", "01"), row("a2", "02")));
    env.write("drops/b.ndjson", line("b1", "acme.com") + &line("b2", "acme.com"));
    let r = poll(&env);
    assert!(r.stdout.contains("drops: 4 fetched, 4 new"), "{}", r.stdout);
    // Both grow: only the new rows are read, and line numbers still count from the top.
    env.write("drops/a.csv", format!("{header}{}{}{}a4,web,download,not-a-time,acme.com\n", row("a1", "01"), row("a2", "02"), row("a3", "03")));
    env.write("drops/b.ndjson", line("b1", "acme.com") + &line("b2", "acme.com") + &line("b3", "initech.io"));
    let r = poll(&env);
    assert!(r.stdout.contains("a.csv (csv): 1 imported, 0 duplicate, 1 quarantined"), "{}", r.stdout);
    assert!(r.stdout.contains("a.csv:5: field `occurred_at` is not an RFC 3339 timestamp"), "{}", r.stdout);
    assert!(r.stdout.contains("b.ndjson (ndjson): 1 imported, 0 duplicate"), "{}", r.stdout);
    assert!(r.stdout.contains("drops: 3 fetched, 2 new"), "{}", r.stdout);
    // A file rewritten before its end is read again whole; ids make the old lines duplicates.
    env.write("drops/b.ndjson", line("b0", "hooli.com") + &line("b1", "acme.com") + &line("b2", "acme.com") + &line("b3", "initech.io"));
    let r = poll(&env);
    assert!(r.stdout.contains("b.ndjson (ndjson): 1 imported, 3 duplicate"), "{}", r.stdout);
    assert_eq!(domains(&env).len(), 7);
}

#[test]
fn one_unreadable_file_is_reported_by_name_and_the_others_are_imported() {
    let env = Env::new();
    watch(&env, "0s");
    env.write("drops/a.ndjson", line("a1", "acme.com"));
    let locked = env.write("drops/b.ndjson", line("b1", "initech.io"));
    std::fs::create_dir_all(env.path().join("drops/c.ndjson")).unwrap();
    env.write("drops/d.ndjson.gz", b"\x1f\x8b\x08\x00garbage, not deflate");
    env.write("drops/e.ndjson", line("e1", "hooli.com"));
    set_mode(&locked, 0o000);
    let r = poll_as_unprivileged(&env);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(domains(&env), ["a1 acme.com", "e1 hooli.com"], "{}", r.stdout);
    for (name, why) in [("b.ndjson", "Permission denied"), ("c.ndjson", "is a directory"), ("d.ndjson.gz", "not a readable gzip file")] {
        let said: Vec<&str> = r.stdout.lines().filter(|l| l.contains(&format!("drops/{name}"))).collect();
        assert_eq!(said.len(), 1, "{name} is reported once: {}", r.stdout);
        assert!(said[0].contains(why), "{name}: {}", said[0]);
    }
    // Readable again: the next poll imports it, and only it.
    set_mode(&locked, 0o644);
    std::fs::remove_dir(env.path().join("drops/c.ndjson")).unwrap();
    std::fs::remove_file(env.path().join("drops/d.ndjson.gz")).unwrap();
    let r = poll_as_unprivileged(&env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("drops: 1 fetched, 1 new"), "{}", r.stdout);
    assert_eq!(domains(&env), ["a1 acme.com", "b1 initech.io", "e1 hooli.com"]);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `poll` as a user file permissions apply to: root reads any file, so when the tests
/// run as root the binary runs as `nobody` (the config dir opened up to it).
fn poll_as_unprivileged(env: &Env) -> Run {
    use std::os::unix::process::CommandExt;
    let mut cmd = env.command(&["poll"]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        for dir in [env.path().to_path_buf(), env.path().join("drops"), env.path().join("connectors")] {
            set_mode(&dir, 0o777);
        }
        for file in ["oql.db", "oql.db-wal", "oql.db-shm"].map(|f| env.path().join(f)).iter().filter(|p| p.exists()) {
            set_mode(file, 0o666);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8(out.stdout).unwrap(), stderr: String::from_utf8(out.stderr).unwrap() }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    out.write_all(bytes).unwrap();
    out.finish().unwrap()
}

#[test]
fn gzip_exports_are_read_by_extension_and_by_magic_bytes() {
    let env = Env::new();
    watch(&env, "0s");
    env.write("drops/a.ndjson.gz", gzip((line("g1", "acme.com") + &line("g2", "acme.com")).as_bytes()));
    let scarf = "id,type,package,time,origin_domain,confidence\ns1,binary-download,oqldb,2026-10-02T10:00:00Z,initech.io,0.9\n";
    env.write("drops/scarf-2026-10-02.csv.gz", gzip(scarf.as_bytes()));
    // Gzipped though not named so (a pipeline that forgot the suffix).
    env.write("drops/c.ndjson", gzip(line("g3", "hooli.com").as_bytes()));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("scarf-2026-10-02.csv.gz (scarf): 1 imported"), "{}", r.stdout);
    assert_eq!(domains(&env), ["g1 acme.com", "g2 acme.com", "g3 hooli.com", "s1 initech.io"]);
    // Unchanged: not read again.
    assert!(poll(&env).stdout.contains("drops: 0 fetched"));
    // `import` reads gzip too, and a damaged one is said in words, never in its bytes.
    let mut cut = gzip(line("g4", "globex.example").repeat(200).as_bytes());
    cut.truncate(cut.len() / 2);
    let file = env.write("elsewhere/cut.ndjson.gz", &cut);
    let r = env.run(&["import", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("cut.ndjson.gz: not a readable gzip file: the compressed data ends early"), "{}", r.stderr);
    let binary = env.write("elsewhere/binary.csv", [0x50u8, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x08, 0x00, 0xff, 0xfe, b'\n', 0x01, 0x02]);
    let r = env.run(&["import", binary.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("binary.csv:1: the first line is not a CSV header: it holds the control byte 0x03"), "{}", r.stderr);
    for text in [&r.stdout, &r.stderr] {
        assert!(!text.chars().any(|c| (c.is_control() && c != '\n') || c == '\u{fffd}'), "no binary bytes: {text:?}");
    }
}

#[test]
fn only_export_files_in_a_watched_folder_are_read() {
    let env = Env::new();
    watch(&env, "0s");
    env.write("drops/README", "Drop export files here.\n");
    env.write("drops/notes.txt", "not an export");
    env.write("drops/b.csv.part", "id,source\n");
    env.write("drops/c.ndjson.tmp", "{\"id\":");
    env.write("drops/SHA256SUMS", "abc  a.ndjson\n");
    env.write("drops/a.ndjson", line("a1", "acme.com"));
    let r = poll(&env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, format!("{}/drops/a.ndjson (ndjson): 1 imported, 0 duplicate, 0 quarantined, 0 unattributed\ndrops: 1 fetched, 1 new activities; 0 API calls\n", env.path().display()));
}
