//! What the shipped deployment files promise: the container health check works without
//! curl (`oql-sync health`), the image is built with the SQLite flags the benchmarks
//! measured, the systemd unit is sandboxed (`systemd-analyze security` ≤ 2.0) and does
//! not restart on config errors, and server-side CLI commands find config and store.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Env;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn health_answers_zero_for_a_running_daemon_and_one_without_one() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: data\n");
    std::fs::create_dir_all(env.path().join("data")).unwrap();
    let port = free_port();

    // Nobody listens yet: unhealthy, exit 1, and the message says where it asked.
    let none = env.run(&["health", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(none.code, 1, "{}{}", none.stdout, none.stderr);
    assert!(none.stderr.contains(&format!("no daemon answers at http://127.0.0.1:{port}/healthz")), "{}", none.stderr);

    // The daemon listens on every interface, as in the container; `health` asks with the
    // same address (and with `:PORT`) and gets through on loopback.
    let mut child = env
        .command(&["run", "--listen", &format!("0.0.0.0:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let healthy = loop {
        let r = env.run(&["health", "--listen", &format!("0.0.0.0:{port}")]);
        if r.code == 0 || started.elapsed() > Duration::from_secs(20) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let short = env.run(&["health", "--listen", &format!(":{port}")]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(healthy.code, 0, "{}{}", healthy.stdout, healthy.stderr);
    assert!(healthy.stdout.starts_with(&format!("healthy: http://127.0.0.1:{port}/healthz answered 200 ok")), "{}", healthy.stdout);
    assert_eq!(short.code, 0, "{}{}", short.stdout, short.stderr);

    let bad = env.run(&["health", "--listen", "localhost"]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("`localhost` is not HOST:PORT"), "{}", bad.stderr);
}

#[test]
fn the_image_builds_with_the_benchmarked_sqlite_and_checks_its_health_without_curl() {
    let dockerfile = repo_file("Dockerfile");
    assert!(dockerfile.contains("COPY .cargo ./.cargo"), "the image must build with .cargo/config.toml's LIBSQLITE3_FLAGS");
    let health = dockerfile.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    assert!(health.contains(r#"CMD ["oql-sync", "health"]"#), "{health}");
    assert!(!dockerfile.lines().any(|l| !l.starts_with('#') && l.contains("curl")), "the runtime image has no curl");
    // The dependency layer is built before the sources are copied.
    let deps = dockerfile.find("cargo build --release --locked --bin oql-sync").unwrap();
    assert!(deps < dockerfile.find("COPY src ./src").unwrap());
    // The health command parses with the address the image's CMD listens on.
    assert!(dockerfile.contains(r#"CMD ["run", "--listen", "0.0.0.0:9464""#));
}

#[test]
fn cli_commands_on_the_server_find_the_config_dir_from_the_environment() {
    let env = Env::new();
    env.write("connectors/drops.yaml", "name: drops\nkind: export\nschedule: \"0 0 3 * * *\"\npath: data\n");
    std::fs::create_dir_all(env.path().join("data")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oql-sync"))
        .arg("check")
        .env("OQL_CONFIG_DIR", env.path())
        .env_remove("OQL_DB")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("config {} is valid", env.path().display())), "{stdout}");
    let profile = repo_file("deploy/oql-sync.sh");
    let unit = repo_file("deploy/oql-sync.service");
    for line in ["OQL_CONFIG_DIR=/etc/oql-sync", "OQL_DB=sqlite:///var/lib/oql-sync/oql.db"] {
        assert!(profile.contains(line) && unit.contains(line), "{line} in both the unit and deploy/oql-sync.sh");
    }
}

#[test]
fn the_systemd_unit_is_sandboxed_and_never_restarts_on_a_config_error() {
    let unit = repo_file("deploy/oql-sync.service");
    assert!(unit.lines().any(|l| l == "RestartPreventExitStatus=2"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/oql-sync.service");
    let Ok(out) = std::process::Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output() else {
        eprintln!("systemd-analyze is not installed: the exposure score is not checked here");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for oql-sync.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
    assert!(level <= 2.0, "systemd-analyze security rates the unit {level} (must be 2.0 or lower)");
}
