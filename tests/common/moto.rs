//! A local S3-compatible server for the bucket tests: moto's server mode
//! (`pip install 'moto[server]'`, then `moto_server -p PORT`), started by the test on a
//! free loopback port and killed when dropped. `.ci/run` installs it when missing; a
//! machine where it cannot be installed skips the bucket tests, saying so loudly.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;

pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_moto() -> bool {
    Command::new("moto_server").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Moto {
    /// Starts moto, installing it first when it is missing; `None` (after a loud
    /// message) when it cannot be had.
    pub fn start() -> Option<Moto> {
        if !have_moto() {
            let _ = Command::new("python3").args(["-m", "pip", "install", "--quiet", "moto[server]"]).status();
        }
        if !have_moto() {
            eprintln!("\n!!!!! SKIPPED: moto_server is not installed and `pip install 'moto[server]'` failed: the S3 bucket tests did not run !!!!!\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// The environment the binary reads its S3 credentials and endpoint from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Creates a bucket and returns a client of it.
    pub async fn bucket(&self, name: &str) -> Arc<dyn ObjectStore> {
        let r = reqwest::Client::new().put(format!("{}/{name}", self.endpoint)).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_access_key_id("testing")
                .with_secret_access_key("testing")
                .with_region("us-east-1")
                .with_bucket_name(name)
                .build()
                .unwrap(),
        )
    }
}

pub async fn put(bucket: &Arc<dyn ObjectStore>, key: &str, body: impl Into<Vec<u8>>) {
    let body: Vec<u8> = body.into();
    bucket.put(&ObjectPath::from(key), body.into()).await.unwrap();
}
