//! A real `redis-server` per test: a free loopback port, its own directory, AOF on with
//! `appendfsync always` (so a restart keeps every acknowledged write).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running redis-server, killed (and its directory removed) on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// With [`RedisServer::start_tls`]: the TLS port, beside the plain one.
    tls_port: Option<u16>,
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// Panics if `redis-server` is not installed: tests that need it fail, never skip.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`RedisServer::start`] with more `redis-server` arguments, which override the
    /// defaults (e.g. `["--appendfsync", "everysec"]`, the shipped setting); they apply to
    /// every restart too.
    pub fn start_with(args: &[&str]) -> RedisServer {
        static N: AtomicU32 = AtomicU32::new(0);
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("labelgen-redis-{}-{}-{port}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut server = RedisServer { port, dir, child: None, tls_port: None, extra_args: args.iter().map(|a| a.to_string()).collect() };
        server.spawn();
        server
    }

    /// A server that also listens with TLS (a CA and a certificate for `localhost` made by
    /// `openssl` in its directory) and requires `password`.
    pub fn start_tls(password: &str) -> RedisServer {
        let mut server = RedisServer::start();
        server.stop(false);
        let dir = server.dir.clone();
        let ossl = |args: &[&str]| {
            let o = Command::new("openssl").args(args).current_dir(&dir).output().unwrap_or_else(|e| panic!("openssl is needed for the TLS test: {e}"));
            assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        ossl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=labelgen test CA", "-keyout", "ca.key", "-out", "ca.pem"]);
        ossl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        ossl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem"]);
        let tls_port = crate::free_port();
        server.tls_port = Some(tls_port);
        server.extra_args = ["--tls-port", &tls_port.to_string(), "--tls-cert-file", "server.pem", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.pem"]
            .into_iter()
            .map(String::from)
            .chain(["--tls-auth-clients".to_string(), "no".to_string(), "--requirepass".to_string(), password.to_string()])
            .collect();
        server.spawn();
        server
    }

    /// `rediss://localhost:TLS_PORT/` (no password in it), for a [`RedisServer::start_tls`] server.
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}/", self.tls_port.expect("started with start_tls"))
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (SIGTERM, then SIGKILL if it lingers) and starts it again on the
    /// same port and directory, so the AOF brings the data back.
    pub fn restart(&mut self) {
        self.stop(true);
        self.spawn();
    }

    /// Kills the server and starts it again with none of its data (its AOF deleted): Redis
    /// lost everything, as a pod without a volume or a crash before fsync would.
    pub fn restart_empty(&mut self) {
        self.stop(false);
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name != "redis.log" {
                let p = entry.path();
                let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            }
        }
        self.spawn();
    }

    /// Kills the server at once (SIGKILL); `restart` brings it back.
    pub fn kill(&mut self) {
        self.stop(false);
    }

    fn stop(&mut self, graceful: bool) {
        let Some(mut child) = self.child.take() else { return };
        if graceful {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .args(["--logfile", "redis.log"])
            .args(&self.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it (apt-get install redis-server) or run .ci/run")
            }
            Err(e) => panic!("start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_for_ping();
    }

    fn wait_for_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                    panic!("redis-server on port {} exited ({status}):\n{log}", self.port);
                }
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a server answers PING with +PONG (not -LOADING) on the port.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    // A server that requires a password answers NOAUTH: it is up all the same.
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
