//! A real HAProxy in front of `deskd serve` replicas (tests/api/balancer.rs).

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use crate::helpers::*;

/// HAProxy (the Debian package) in the foreground with the repository's
/// `deploy/haproxy/haproxy.cfg`, in front of three `deskd serve` replicas:
/// h2c on a free port, per-request round robin, `/readyz` health checks. Its
/// log goes to a temporary file; the process is killed when this drops.
pub struct HaProxy {
    child: std::process::Child,
    /// The frontend clients connect to.
    pub addr: SocketAddr,
    /// The stats page (`/stats;csv`).
    pub stats_addr: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One replica as HAProxy sees it: `(gRPC port, admin port)`.
pub type Backend = (u16, u16);

impl HaProxy {
    pub const CONFIG: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");

    /// Starts HAProxy in front of `backends` (servers r1, r2, r3) and waits
    /// until its frontend accepts connections (not until the servers are UP:
    /// see `wait_status`).
    pub async fn start(backends: [Backend; 3]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("haproxy.log");
        let port = free_port();
        let stats_port = free_port();
        let mut cmd = std::process::Command::new("haproxy");
        cmd.args(["-db", "-f", Self::CONFIG])
            .current_dir(dir.path())
            .env("LB_ADDR", format!("127.0.0.1:{port}"))
            .env("LB_STATS_ADDR", format!("127.0.0.1:{stats_port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).expect("haproxy log"))
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("haproxy err"));
        for (i, (grpc, admin)) in backends.iter().enumerate() {
            cmd.env(format!("LB_R{}_ADDR", i + 1), format!("127.0.0.1:{grpc}"))
                .env(format!("LB_R{}_ADMIN_PORT", i + 1), admin.to_string());
        }
        let child = cmd
            .spawn()
            .expect("start haproxy (scripts/ensure-services installs the Debian package)");
        let lb = HaProxy {
            child,
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            stats_addr: format!("127.0.0.1:{stats_port}"),
            log,
            _dir: dir,
        };
        wait_listening(stats_port, "haproxy stats").await;
        wait_listening(port, "haproxy").await;
        lb
    }

    /// HAProxy's own log so far (stderr and stdout), for failure messages.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default());
        text
    }

    /// The stats CSV as rows of `column → value` (proxy `pxname`, server
    /// `svname`, `status`, `stot`, `req_tot`, `conn_tot`, …).
    pub async fn stats(&self) -> Vec<std::collections::HashMap<String, String>> {
        let (status, body) = http_get(&self.stats_addr, "/stats;csv").await;
        assert_eq!(status, 200, "{body}");
        // The stats page answers with a chunked body.
        let mut csv = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if size == 0 || after.len() < size {
                break;
            }
            csv.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        let mut lines = csv.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .map(str::to_string)
            .collect();
        lines
            .filter(|l| !l.is_empty())
            .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
            .collect()
    }

    /// The check status of backend server `server` (r1, r2, r3): "UP", "DOWN", …
    pub async fn status(&self, server: &str) -> String {
        self.stats()
            .await
            .into_iter()
            .find(|r| r.get("pxname").is_some_and(|p| p == "deskd") && r.get("svname").is_some_and(|s| s == server))
            .and_then(|r| r.get("status").cloned())
            .unwrap_or_default()
    }

    /// Polls (bounded, 20 s) until `server`'s status is exactly `want`:
    /// "UP" is in rotation; a server on its way up reads "DOWN 1/2".
    pub async fn wait_status(&self, server: &str, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status(server).await;
            if status == want {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "haproxy: {server} is {status:?}, not {want:?}, after 20s\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
