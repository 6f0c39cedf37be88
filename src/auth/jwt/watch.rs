//! The JWKS watcher: reloads the public keys on SIGHUP and when a key file
//! changes.

use std::{future::Future, sync::Arc, time::Duration};

use super::JwtKeys;

/// Reloads `keys` on SIGHUP and whenever a key file's modification time,
/// length or inode changes (checked every `interval`), until `stop`
/// completes. Returns at once when no key file is configured, leaving
/// SIGHUP alone.
pub async fn watch_jwks(keys: Arc<JwtKeys>, interval: Duration, stop: impl Future<Output = ()>) {
    if !keys.sources.has_files() {
        return;
    }
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: JWT keys reload on file changes only");
            None
        }
    };
    #[cfg(not(unix))]
    let mut hangup: Option<()> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = next_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading JWT keys");
                let _ = keys.reload();
            }
            () = tokio::time::sleep(interval) => {
                if keys.sources.changed() {
                    tracing::info!("a JWT key file changed: reloading");
                    let _ = keys.reload();
                }
            }
        }
    }
}

#[cfg(unix)]
async fn next_hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(s) = signal.as_mut()
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) {
    std::future::pending().await
}
