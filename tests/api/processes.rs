//! Processes a test starts beside the in-process server: `deskd serve`
//! children, and the small network helpers they need (free ports, a plain
//! HTTP GET of the admin listener, `/metrics` sums).

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use tonic::transport::Channel;

use crate::helpers::*;

/// A port nothing listens on (bound, then released), for a peer process
/// that must be told its port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits (bounded, 10 s) until something accepts connections on `port`.
pub async fn wait_listening(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on port {port} within 10s");
}

/// A `deskd serve` process against `app`'s database (JSON logs), with
/// extra `DESKD_*` settings; its stderr and stdout lines are collected.
pub struct ServeProcess {
    /// Taken by `stop`; a process still here when the value drops (a test
    /// failed first) is killed, so no server outlives its test.
    child: Option<std::process::Child>,
    pub addr: String,
    pub admin_addr: String,
    pub cwd: tempfile::TempDir,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    pub async fn start(app: &TestApp, extra: &[(&str, &str)]) -> ServeProcess {
        use std::{
            io::BufRead as _,
            process::{Command, Stdio},
            sync::{Arc, Mutex},
        };
        let cwd = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskd"));
        cmd.arg("serve")
            .current_dir(cwd.path())
            .env_clear()
            .env("DESKD_LISTEN_ADDR", "127.0.0.1:0")
            .env("DESKD_ADMIN_ADDR", "127.0.0.1:0")
            .env("DESKD_DATABASE_URL", app.db.app_url())
            .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
            .env("DESKD_JWT_SECRET", JWT_SECRET)
            .env("DESKD_LOG_FORMAT", "json")
            .env("DESKD_EXPORTS_DIR", exports_dir(&app.db.name))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn deskd serve");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stdout_pipe = child.stdout.take().expect("stdout");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(&'static str, String)>();
        let err_lines = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                for (needle, key) in [("deskd serving gRPC", "grpc"), ("deskd admin listener", "admin")] {
                    if line.contains(needle)
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && let Some(a) = v["addr"].as_str()
                    {
                        let _ = tx.send((key, a.to_string()));
                    }
                }
                err_lines.lock().expect("lines").push(line);
            }
        });
        let out_lines = stdout.clone();
        let out_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
                out_lines.lock().expect("lines").push(line);
            }
        });
        let (addr, admin_addr) = tokio::task::spawn_blocking(move || {
            let (mut grpc, mut admin) = (None, None);
            while grpc.is_none() || admin.is_none() {
                let (k, a) = rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the server announces its addresses");
                if k == "grpc" { grpc = Some(a) } else { admin = Some(a) }
            }
            (grpc.unwrap_or_default(), admin.unwrap_or_default())
        })
        .await
        .expect("join");
        ServeProcess {
            child: Some(child),
            addr,
            admin_addr,
            cwd,
            stderr,
            stdout,
            readers: vec![err_reader, out_reader],
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Sends SIGTERM and waits for the exit; returns (success, stderr lines, stdout lines).
    pub async fn stop(mut self) -> (bool, Vec<String>, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let err = self.stderr.lock().expect("lines").clone();
        let out = self.stdout.lock().expect("lines").clone();
        (status.success(), err, out)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET (the admin listener): (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The sum of the `/metrics` samples of `name` carrying every one of
/// `labels` (e.g. `outcome="limited"`). Metrics are process-wide and tests
/// run in parallel, so compare a reading with an earlier one (it can only
/// grow by at least what the test caused).
pub async fn metric_sum(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (status, text) = http_get(&admin.to_string(), "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
