//! A real S3-compatible HTTP server (moto's server, from PyPI) on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use shared::storage::Store;

pub struct S3Server {
    child: Child,
    port: u16,
}

/// The Python that has moto: `LABELGEN_TEST_PYTHON`, else `python3`.
fn python() -> PathBuf {
    std::env::var_os("LABELGEN_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into())
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = crate::free_port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto's S3 server ({e}): install it (pip install 'moto[s3]' flask flask-cors) or run .ci/run"));
        let mut s = S3Server { child, port };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("moto's S3 server exited at start ({status}): install it (pip install 'moto[s3]' flask flask-cors) or run .ci/run");
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "moto's S3 server did not start within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        s.port = port;
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a plain PUT.
    pub fn create_bucket(&self, bucket: &str) {
        self.plain("PUT", &format!("/{bucket}"), &format!("create bucket {bucket}"));
    }

    /// An unsigned request with no body (moto checks no signature); panics unless 200.
    /// Returns the whole answer.
    fn plain(&self, method: &str, target: &str, what: &str) -> String {
        // A busy machine's moto now and then resets a connection: a few tries.
        let send = || -> std::io::Result<String> {
            let mut c = TcpStream::connect(("127.0.0.1", self.port))?;
            write!(c, "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port)?;
            let mut resp = String::new();
            c.read_to_string(&mut resp)?;
            Ok(resp)
        };
        use backon::BlockingRetryable;
        let resp = send
            .retry(shared::retry::policy(std::time::Duration::from_millis(200), std::time::Duration::from_secs(2), 5))
            .notify(|e, wait| eprintln!("{what}: {e}; trying again in {wait:?}"))
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"), "{what}: {resp}");
        resp
    }

    /// Keys of the bucket's open (incomplete) multipart uploads, by a plain
    /// ListMultipartUploads request.
    pub fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let resp = self.plain("GET", &format!("/{bucket}?uploads"), &format!("list uploads of {bucket}"));
        resp.split("<Upload>").skip(1).filter_map(|u| Some(u.split_once("<Key>")?.1.split_once("</Key>")?.0.to_string())).collect()
    }

    /// The `AWS_*` variables a binary needs to reach this server (through `endpoint`).
    pub fn env_for(endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "testing-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret-value"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn env(&self) -> Vec<(String, String)> {
        Self::env_for(&self.endpoint())
    }

    /// A [`Store`] on `s3://bucket/prefix` of this server, for checks from the test.
    pub fn store(&self, bucket: &str, prefix: &str) -> Store {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_access_key_id("testing-key-id")
            .with_secret_access_key("testing-secret-value")
            .with_region("us-east-1")
            .build()
            .unwrap();
        Store::from_multipart_store(Arc::new(s3), prefix, &format!("s3://{bucket}/{prefix}"))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
