//! A small fault-injecting HTTP proxy for the S3 server: it forwards each request on a
//! fresh upstream connection and, by a fixed pattern, answers some with 503 Slow Down,
//! drops the connection without forwarding, or forwards the request and drops the answer
//! ("write applied, answer lost"); or it refuses everything with 403 as S3 does for bad
//! credentials. Deterministic (request counter), no sleeps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Which requests fail, and how (each `every_*`: every n-th request; 0 never).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub every_503: u64,
    /// Dropped before reaching the server.
    pub every_drop: u64,
    /// Forwarded (the server applies it), then the answer is dropped.
    pub every_lost_answer: u64,
    /// Only requests with this method count for `every_lost_answer` (e.g. "PUT").
    pub lost_answer_method: Option<&'static str>,
    /// Answer every request with 403 InvalidAccessKeyId, as S3 does for bad credentials.
    pub deny_all: bool,
}

pub struct FaultyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Requests seen, answered with 503 (or 403), dropped, answers lost, requests of the
    /// lost-answer method seen.
    pub counts: Arc<[AtomicU64; 5]>,
}

impl FaultyProxy {
    /// Every `every_503`-th request gets a 503; every `every_drop`-th is dropped (0: never).
    pub fn start(upstream_port: u16, every_503: u64, every_drop: u64) -> FaultyProxy {
        FaultyProxy::start_with(upstream_port, Faults { every_503, every_drop, ..Default::default() })
    }

    pub fn start_with(upstream_port: u16, faults: Faults) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 5]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
        let (stop2, counts2) = (stop.clone(), counts.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let counts = counts2.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream_port, faults, &counts);
                });
            }
        });
        FaultyProxy { port, stop, counts }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> (u64, u64, u64) {
        (self.counts[0].load(Ordering::SeqCst), self.counts[1].load(Ordering::SeqCst), self.counts[2].load(Ordering::SeqCst))
    }

    /// Requests applied by the server whose answer was dropped.
    pub fn lost_answers(&self) -> u64 {
        self.counts[3].load(Ordering::SeqCst)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves the one request of a client connection.
fn handle(client: TcpStream, upstream_port: u16, faults: Faults, counts: &[AtomicU64; 5]) -> std::io::Result<()> {
    let Faults { every_503, every_drop, every_lost_answer, lost_answer_method, deny_all } = faults;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    {
        // Request head (one request per connection: answers carry `Connection: close`).
        let mut head = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.extend_from_slice(b"Connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let n = counts[0].fetch_add(1, Ordering::SeqCst) + 1;
        if deny_all {
            counts[1].fetch_add(1, Ordering::SeqCst);
            let msg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>AKIAPOISONEDKEY0001</AWSAccessKeyId><RequestId>REQ123</RequestId></Error>";
            write!(client, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len())?;
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        if every_drop > 0 && n.is_multiple_of(every_drop) {
            counts[2].fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        if every_503 > 0 && n.is_multiple_of(every_503) {
            counts[1].fetch_add(1, Ordering::SeqCst);
            let msg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
            write!(client, "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len())?;
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
        up.write_all(&head)?;
        up.write_all(&body)?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        let method_matches = lost_answer_method.is_none_or(|m| head.starts_with(m.as_bytes()));
        let m = if method_matches { counts[4].fetch_add(1, Ordering::SeqCst) + 1 } else { 0 };
        if every_lost_answer > 0 && method_matches && m.is_multiple_of(every_lost_answer) {
            counts[3].fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            return Ok(());
        }
        client.write_all(&resp)?;
        let _ = client.shutdown(Shutdown::Both);
    }
    Ok(())
}
