//! The `smtp` and `jobs` sections.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a relay on localhost or a private network only).
    None,
    /// Plain connection upgraded with STARTTLS; refused when the server does not offer it.
    Starttls,
    /// TLS from the first byte (implicit TLS, usually port 465).
    Tls,
}

/// The SMTP relay that outgoing e-mail (welcome messages) goes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// The relay's host name (`DESKD_SMTP_HOST`); also the name its TLS certificate must carry.
    pub host: String,
    /// The relay's port (`DESKD_SMTP_PORT`).
    pub port: u16,
    /// `none`, `starttls` or `tls` (`DESKD_SMTP_TLS`).
    pub tls: SmtpTls,
    /// The user to authenticate as (`DESKD_SMTP_USERNAME`); unset: no authentication.
    #[serde(serialize_with = "serialize_opt_secret", skip_serializing_if = "Option::is_none")]
    pub username: Option<SecretString>,
    /// The password (`DESKD_SMTP_PASSWORD`); required with a username.
    #[serde(serialize_with = "serialize_opt_secret", skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
    /// The `From` mailbox, e.g. `Acme Help <help@acme.example>` (`DESKD_SMTP_FROM`).
    pub from: String,
    /// Bound on each SMTP command (`DESKD_SMTP_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "deskd <no-reply@localhost>".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

fn serialize_opt_secret<S: serde::Serializer>(s: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    // Only used to seed figment with defaults (see `serialize_secret`).
    match s {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// The background job worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Whether `deskd serve` also runs a job worker (`DESKD_JOBS_RUN_IN_SERVE`).
    /// Turn it off when dedicated `deskd worker` processes run the jobs.
    pub run_in_serve: bool,
    /// Jobs one worker runs at once.
    pub concurrency: usize,
    /// How often an idle worker looks for due jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a claimed job stays a worker's without a heartbeat; a dead
    /// worker's jobs run again after this.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// The first retry delay; doubled per failed attempt, ±20 % jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// The longest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            run_in_serve: true,
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
        }
    }
}
