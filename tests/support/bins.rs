//! The real `worker` and `coordinator` binaries, built once per test run.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

/// `target/debug` or `target/release`: where this test or bench binary's profile lives.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|p| p.parent()).expect("test binary lives in target/<profile>/deps").to_path_buf()
}

/// Path of a binary of the workspace, built (incrementally) on first use.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let release = target_dir().ends_with("release");
        let mut args = vec!["build", "-p", "worker", "-p", "coordinator"];
        if release {
            args.push("--release");
        }
        let status = Command::new(env!("CARGO")).args(args).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
    });
    let p = target_dir().join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A command for a binary with the test environment: quiet logs unless asked.
pub fn cmd(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    if std::env::var_os("RUST_LOG").is_none() {
        c.env("RUST_LOG", "warn");
    }
    c.stdin(Stdio::null());
    c
}

/// Runs a command to the end, capturing its output.
pub fn run(mut c: Command) -> Output {
    c.output().expect("spawn binary")
}

/// Spawns a command with its stdout and stderr inherited (visible with --nocapture).
pub fn spawn(mut c: Command) -> Child {
    c.spawn().expect("spawn binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Sends a signal to a child (SIGKILL, SIGSTOP, SIGCONT, SIGTERM) with `kill`.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {} failed", child.id());
}

/// Waits (up to 60 s) until `child` catches SIGTERM, as its `SigCgt` mask in
/// /proc/PID/status says: a SIGTERM sent before the handler is installed kills the
/// process instead of testing the handler.
pub fn wait_catches_sigterm(child: &Child) {
    let path = format!("/proc/{}/status", child.id());
    let t0 = std::time::Instant::now();
    loop {
        let status = std::fs::read_to_string(&path).unwrap_or_default();
        let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok()).unwrap_or(0);
        if caught & (1 << (15 - 1)) != 0 {
            return;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "process {} never installed a SIGTERM handler: {status}", child.id());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
