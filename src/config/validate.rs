//! The cross-field rules that serde cannot check, run by `Config::load`.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{Config, ConfigError, ExportsBackend, env_name};

impl Config {
    /// Checks cross-field rules that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        if self.database.url.expose_secret().trim().is_empty() {
            return bad("database.url", "must not be empty");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.database.min_connections > self.database.max_connections {
            return bad("database.min_connections", "must not exceed database.max_connections");
        }
        if self.database.acquire_timeout.is_zero() {
            return bad("database.acquire_timeout", "must be positive");
        }
        if self.database.statement_timeout.is_zero() {
            return bad("database.statement_timeout", "must be positive");
        }
        let secret = self.jwt.secret.expose_secret();
        if !secret.is_empty() && secret.len() < 32 {
            return bad("jwt.secret", "must be at least 32 bytes");
        }
        if self.jwt.leeway > Duration::from_secs(60) {
            return bad("jwt.leeway", "must be at most 60s");
        }
        if self.jwt.issuer.is_empty() {
            return bad("jwt.issuer", "must not be empty");
        }
        if self.jwt.audience.is_empty() {
            return bad("jwt.audience", "must not be empty");
        }
        self.validate_jwt_keys()?;
        if self.server.max_in_flight == 0 {
            return bad("server.max_in_flight", "must be at least 1");
        }
        if self.server.max_in_flight_per_tenant == 0 {
            return bad("server.max_in_flight_per_tenant", "must be at least 1");
        }
        if self.server.max_concurrent_streams == 0 {
            return bad("server.max_concurrent_streams", "must be at least 1");
        }
        if self.server.max_concurrent_rpcs_per_connection == 0 {
            return bad("server.max_concurrent_rpcs_per_connection", "must be at least 1");
        }
        if !(16_384..=16_777_215).contains(&self.server.max_frame_size) {
            return bad("server.max_frame_size", "must be between 16384 and 16777215");
        }
        if self.server.max_request_duration.is_zero() {
            return bad("server.max_request_duration", "must be positive");
        }
        if self.server.handshake_timeout.is_zero() {
            return bad("server.handshake_timeout", "must be positive");
        }
        if self.server.max_connection_age.is_zero() {
            return bad("server.max_connection_age", "must be positive");
        }
        if self.server.max_connection_age_grace.is_zero() {
            return bad("server.max_connection_age_grace", "must be positive");
        }
        let mut quotas = vec![
            ("rate_limit.tenant".to_string(), self.rate_limit.tenant),
            ("rate_limit.principal".to_string(), self.rate_limit.principal),
            (
                "rate_limit.service_principal".to_string(),
                self.rate_limit.service_principal,
            ),
        ];
        for (name, plan) in &self.rate_limit.plans {
            for (part, q) in [
                ("tenant", plan.tenant),
                ("principal", plan.principal),
                ("service_principal", plan.service_principal),
            ] {
                if let Some(q) = q {
                    quotas.push((format!("rate_limit.plans.{name}.{part}"), q));
                }
            }
        }
        for (key, q) in quotas {
            if q.requests == 0 || q.period.is_zero() || q.burst == 0 {
                return Err(ConfigError(format!(
                    "key `{key}`: requests, period and burst must all be positive"
                )));
            }
        }
        if !self
            .redis
            .key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
            || self.redis.key_prefix.is_empty()
        {
            return bad("redis.key_prefix", "must be non-empty [A-Za-z0-9_.:-]");
        }
        if self.redis.op_timeout.is_zero() || self.redis.connect_timeout.is_zero() || self.redis.max_connections == 0 {
            return bad(
                "redis",
                "op_timeout, connect_timeout and max_connections must be positive",
            );
        }
        if self.cache.stats_ttl.is_zero() || self.cache.local_ttl.is_zero() {
            return bad("cache", "stats_ttl and local_ttl must be positive");
        }
        let key = self.secret_key.expose_secret();
        if !key.is_empty() && key.len() < 32 {
            return bad("secret_key", "must be at least 32 bytes");
        }
        let pepper = self.api_keys.pepper.expose_secret();
        if !pepper.is_empty() && pepper.len() < 32 {
            return bad("api_keys.pepper", "must be at least 32 bytes");
        }
        if self.api_keys.last_use_flush_interval.is_zero() {
            return bad("api_keys.last_use_flush_interval", "must be positive");
        }
        if self.tenant_cache.ttl.is_zero() || self.tenant_cache.principal_ttl.is_zero() {
            return bad("tenant_cache", "ttl and principal_ttl must be positive");
        }
        if self.health.check_interval.is_zero() || self.health.check_timeout.is_zero() {
            return bad("health", "check_interval and check_timeout must be positive");
        }
        self.validate_smtp_and_jobs()
    }

    /// The `smtp` and `jobs` sections.
    fn validate_smtp_and_jobs(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let smtp = &self.smtp;
        if smtp.host.trim().is_empty() {
            return bad("smtp.host", "must not be empty");
        }
        if smtp.port == 0 {
            return bad("smtp.port", "must be between 1 and 65535");
        }
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return bad("smtp.from", "must be a mailbox such as `deskd <no-reply@example.com>`");
        }
        if smtp.timeout.is_zero() {
            return bad("smtp.timeout", "must be positive");
        }
        if smtp.username.is_some() != smtp.password.is_some() {
            return bad("smtp.password", "smtp.username and smtp.password must be set together");
        }
        let jobs = &self.jobs;
        if jobs.concurrency == 0 {
            return bad("jobs.concurrency", "must be at least 1");
        }
        for (key, d) in [
            ("jobs.poll_interval", jobs.poll_interval),
            ("jobs.lease", jobs.lease),
            ("jobs.backoff_base", jobs.backoff_base),
        ] {
            if d.is_zero() {
                return bad(key, "must be positive");
            }
        }
        if jobs.lease < Duration::from_millis(30) || jobs.lease.as_millis() > i32::MAX as u128 {
            return bad("jobs.lease", "must be between 30ms and 24 days");
        }
        if jobs.backoff_max < jobs.backoff_base {
            return bad("jobs.backoff_max", "must not be less than jobs.backoff_base");
        }
        self.validate_exports()?;
        self.validate_telemetry()
    }

    /// The `telemetry` section.
    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let t = &self.telemetry;
        if !t.otlp_endpoint.is_empty() {
            match url::Url::parse(&t.otlp_endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return bad(
                        "telemetry.otlp_endpoint",
                        "must be an http(s) URL such as http://collector:4317",
                    );
                }
            }
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            return bad("telemetry.sampling_ratio", "must be between 0.0 and 1.0");
        }
        if t.service_name.trim().is_empty() {
            return bad("telemetry.service_name", "must not be empty");
        }
        if t.metrics_interval.is_zero() || t.export_timeout.is_zero() {
            return bad(
                "telemetry.metrics_interval",
                "metrics_interval and export_timeout must be positive",
            );
        }
        Ok(())
    }

    /// The `exports` section.
    fn validate_exports(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let e = &self.exports;
        match e.backend {
            ExportsBackend::Fs if e.dir.as_os_str().is_empty() => bad("exports.dir", "must not be empty"),
            ExportsBackend::Fs => Ok(()),
            ExportsBackend::S3 => {
                if e.s3_bucket.trim().is_empty() {
                    return bad("exports.s3_bucket", "must be set when exports.backend is s3");
                }
                if e.s3_region.trim().is_empty() {
                    return bad("exports.s3_region", "must not be empty");
                }
                if !e.s3_endpoint.is_empty() {
                    match url::Url::parse(&e.s3_endpoint) {
                        Ok(u) if u.scheme() == "https" => {}
                        Ok(u) if u.scheme() == "http" && e.s3_allow_http => {}
                        Ok(u) if u.scheme() == "http" => {
                            return bad(
                                "exports.s3_endpoint",
                                "is plain http: set exports.s3_allow_http to allow it",
                            );
                        }
                        _ => return bad("exports.s3_endpoint", "must be an http(s) URL"),
                    }
                }
                if e.s3_access_key_id.is_empty() != e.s3_secret_access_key.expose_secret().is_empty() {
                    return bad(
                        "exports.s3_secret_access_key",
                        "exports.s3_access_key_id and exports.s3_secret_access_key must be set together",
                    );
                }
                if e.s3_timeout.is_zero() {
                    return bad("exports.s3_timeout", "must be positive");
                }
                Ok(())
            }
        }
    }
    /// `jwt.keys`, `jwt.jwks_file` and `jwt.reload_interval`. The files are
    /// only checked to be readable here; their keys are parsed when the
    /// server builds its key set (`JwtKeys::from_config`), with messages that
    /// name the key the same way.
    fn validate_jwt_keys(&self) -> Result<(), ConfigError> {
        let jwt = &self.jwt;
        let mut kids = std::collections::HashSet::new();
        for (i, key) in jwt.keys.iter().enumerate() {
            let at = format!("key `jwt.keys[{i}]` (kid `{}`)", key.kid);
            if key.kid.trim().is_empty() {
                return Err(ConfigError(format!("key `jwt.keys[{i}].kid`: must not be empty")));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(ConfigError(format!(
                    "{at}: duplicate kid; every kid in `jwt.keys` must be unique"
                )));
            }
            if let Err(e) = std::fs::File::open(&key.pem_file) {
                return Err(ConfigError(format!(
                    "{at}: pem_file {} cannot be read: {e}",
                    key.pem_file.display()
                )));
            }
        }
        if let Some(path) = &jwt.jwks_file
            && let Err(e) = std::fs::File::open(path)
        {
            return Err(ConfigError(format!(
                "key `jwt.jwks_file` (DESKD_JWT_JWKS_FILE): {} cannot be read: {e}",
                path.display()
            )));
        }
        if jwt.reload_interval.is_zero() {
            return Err(ConfigError(
                "key `jwt.reload_interval` (DESKD_JWT_RELOAD_INTERVAL): must be positive".into(),
            ));
        }
        Ok(())
    }
}
