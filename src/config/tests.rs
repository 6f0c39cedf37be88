use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_are_valid() {
    let cfg = Config::load(None, env(&[])).expect("defaults load");
    assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(cfg.database.max_connections, 20);
    assert_eq!(cfg.database.idle_timeout, Duration::from_secs(30));
    assert_eq!(cfg.database.acquire_timeout, Duration::from_secs(2));
}

#[test]
fn environment_overrides_nested_keys() {
    let cfg = Config::load(
        None,
        env(&[
            ("DESKD_LISTEN_ADDR", "0.0.0.0:6000"),
            ("DESKD_DATABASE_OWNER_URL", "postgres://o@h/db"),
            ("DESKD_DATABASE_MAX_CONNECTIONS", "7"),
            ("DESKD_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("DESKD_JWT_ISSUER", "me"),
            ("DESKD_RATE_LIMIT__TENANT__BURST", "9"),
            ("DESKD_SERVER_SHUTDOWN_GRACE", "3s"),
            ("DESKD_SERVER_DRAIN_DELAY", "1500ms"),
            ("DESKD_JWT_AUDIENCE", "12345"),
            ("DESKD_TEST_PG_HOST", "ignored: belongs to the test suite"),
            ("OTHER", "ignored"),
        ]),
    )
    .expect("loads");
    assert_eq!(cfg.listen_addr.to_string(), "0.0.0.0:6000");
    assert_eq!(cfg.database.owner_url.expose_secret(), "postgres://o@h/db");
    assert_eq!(cfg.database.max_connections, 7);
    assert_eq!(cfg.jwt.issuer, "me");
    assert_eq!(cfg.jwt.audience, "12345", "numeric-looking strings stay strings");
    assert_eq!(cfg.rate_limit.tenant.burst, 9);
    assert_eq!(cfg.server.shutdown_grace, Duration::from_secs(3));
    assert_eq!(cfg.server.drain_delay, Duration::from_millis(1500));
}

#[test]
fn bad_values_name_the_key() {
    let err = Config::load(None, env(&[("DESKD_DATABASE_MAX_CONNECTIONS", "many")])).expect_err("must fail");
    assert!(err.to_string().contains("database.max_connections"), "{err}");
    assert!(err.to_string().contains("DESKD_DATABASE_MAX_CONNECTIONS"), "{err}");

    let err = Config::load(None, env(&[("DESKD_JWT_SECRET", "short")])).expect_err("must fail");
    assert!(err.to_string().contains("jwt.secret"), "{err}");

    let err = Config::load(None, env(&[("DESKD_JWT_LEEWAY", "2m")])).expect_err("must fail");
    assert!(err.to_string().contains("jwt.leeway"), "{err}");

    let err = Config::load(None, env(&[("DESKD_NO_SUCH_KEY", "1")])).expect_err("must fail");
    assert!(err.to_string().contains("no_such_key"), "{err}");

    for key in ["handshake_timeout", "max_connection_age", "max_connection_age_grace"] {
        let var = format!("DESKD_SERVER_{}", key.to_uppercase());
        let err = Config::load(None, env(&[(var.as_str(), "0s")])).expect_err("must fail");
        assert!(err.to_string().contains(&format!("server.{key}")), "{err}");
    }
    let cfg = Config::load(None, env(&[("DESKD_SERVER_MAX_CONNECTION_AGE", "45m")])).expect("valid");
    assert_eq!(cfg.server.max_connection_age, Duration::from_secs(45 * 60));
}

#[test]
fn the_reference_designs_limits_are_expressible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deskd.toml");
    std::fs::write(
        &path,
        "[rate_limit.plans.reference]\n\
         tenant = { requests = 100, period = \"15m\", burst = 100 }\n\
         principal = { requests = 60, period = \"1m\", burst = 60 }\n",
    )
    .expect("write");
    let cfg = Config::load(Some(&path), env(&[])).expect("loads");
    let plan = cfg.rate_limit.plans["reference"];
    assert_eq!(
        plan.tenant,
        Some(Quota {
            requests: 100,
            period: Duration::from_secs(900),
            burst: 100
        })
    );
    assert_eq!(plan.principal.map(|q| q.period), Some(Duration::from_secs(60)));
    assert_eq!(plan.service_principal, None);
    assert!(cfg.rate_limit.service_principal.requests > cfg.rate_limit.principal.requests);
}

#[test]
fn file_then_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("deskd.toml");
    std::fs::write(
        &path,
        "listen_addr = \"127.0.0.1:7000\"\n[database]\nmax_connections = 3\nurl = \"postgres://a@b/c\"\n",
    )
    .expect("write");
    let cfg = Config::load(Some(&path), env(&[("DESKD_DATABASE_MAX_CONNECTIONS", "4")])).expect("loads");
    assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:7000");
    assert_eq!(cfg.database.max_connections, 4);
    assert_eq!(cfg.database.url.expose_secret(), "postgres://a@b/c");
}

#[test]
fn jwt_keys_load_from_the_file_and_are_validated_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("a.pem");
    std::fs::write(&pem, "parsed later, by JwtKeys::from_config").expect("write pem");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, "{}").expect("write jwks");
    let path = dir.path().join("deskd.toml");
    let load = |keys: &str, env_pairs: &[(&str, &str)]| {
        std::fs::write(&path, format!("[jwt]\nreload_interval = \"2s\"\n{keys}")).expect("write toml");
        Config::load(Some(&path), env(env_pairs))
    };
    let key = |kid: &str, alg: &str, file: &std::path::Path| {
        format!(
            "[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\npem_file = {:?}\n",
            file.display().to_string()
        )
    };
    let jwks_str = jwks.display().to_string();

    let cfg = load(
        &format!("{}{}", key("a", "ES256", &pem), key("b", "EdDSA", &pem)),
        &[("DESKD_JWT_JWKS_FILE", &jwks_str)],
    )
    .expect("loads");
    assert_eq!(cfg.jwt.keys.len(), 2);
    assert_eq!(
        cfg.jwt.keys[0],
        JwtKeyConfig {
            kid: "a".into(),
            algorithm: JwtKeyAlgorithm::ES256,
            pem_file: pem.clone(),
        }
    );
    assert_eq!(cfg.jwt.keys[1].algorithm, JwtKeyAlgorithm::EdDSA);
    assert_eq!(cfg.jwt.jwks_file.as_deref(), Some(jwks.as_path()));
    assert_eq!(cfg.jwt.reload_interval, Duration::from_secs(2));
    let defaults = Config::load(None, env(&[])).expect("defaults");
    assert!(defaults.jwt.keys.is_empty() && defaults.jwt.jwks_file.is_none());
    assert_eq!(defaults.jwt.reload_interval, Duration::from_secs(10));

    let missing = dir.path().join("missing.pem");
    for (keys, env_pairs, expected) in [
        (key("a", "HS512", &pem), vec![], "HS512"),
        (
            key("a", "RS256", &missing),
            vec![],
            "key `jwt.keys[0]` (kid `a`): pem_file",
        ),
        (
            format!("{}{}", key("a", "RS256", &pem), key("a", "ES256", &pem)),
            vec![],
            "key `jwt.keys[1]` (kid `a`): duplicate kid",
        ),
        (
            key(" ", "RS256", &pem),
            vec![],
            "key `jwt.keys[0].kid`: must not be empty",
        ),
        (
            String::new(),
            vec![("DESKD_JWT_JWKS_FILE", "/no/such/jwks.json")],
            "key `jwt.jwks_file` (DESKD_JWT_JWKS_FILE)",
        ),
        (
            String::new(),
            vec![("DESKD_JWT_RELOAD_INTERVAL", "0s")],
            "key `jwt.reload_interval` (DESKD_JWT_RELOAD_INTERVAL): must be positive",
        ),
    ] {
        let err = load(&keys, &env_pairs).expect_err(expected);
        assert!(err.to_string().contains(expected), "`{err}` lacks `{expected}`");
    }
    let err = load(&key("a", "HS512", &pem), &[]).expect_err("unknown algorithm");
    assert!(err.to_string().contains("jwt.keys"), "{err}");
}

#[test]
fn smtp_and_jobs_sections_load_from_the_environment_and_are_validated() {
    let cfg = Config::load(None, env(&[])).expect("defaults load");
    assert_eq!(cfg.smtp.host, "127.0.0.1");
    assert_eq!(cfg.smtp.port, 25);
    assert_eq!(cfg.smtp.tls, SmtpTls::None);
    assert!(cfg.smtp.username.is_none() && cfg.smtp.password.is_none());
    assert_eq!(cfg.smtp.from, "deskd <no-reply@localhost>");
    assert_eq!(cfg.smtp.timeout, Duration::from_secs(10));
    assert!(cfg.jobs.run_in_serve);
    assert_eq!(cfg.jobs.concurrency, 4);
    assert_eq!(cfg.jobs.poll_interval, Duration::from_millis(500));
    assert_eq!(cfg.jobs.lease, Duration::from_secs(30));
    assert_eq!(cfg.jobs.backoff_base, Duration::from_secs(2));
    assert_eq!(cfg.jobs.backoff_max, Duration::from_secs(3600));

    let cfg = Config::load(
        None,
        env(&[
            ("DESKD_SMTP_HOST", "mail.example.com"),
            ("DESKD_SMTP_PORT", "465"),
            ("DESKD_SMTP_TLS", "tls"),
            ("DESKD_SMTP_USERNAME", "deskd"),
            ("DESKD_SMTP_PASSWORD", "hunter2"),
            ("DESKD_SMTP_FROM", "Help <help@example.com>"),
            ("DESKD_JOBS_RUN_IN_SERVE", "false"),
            ("DESKD_JOBS_CONCURRENCY", "8"),
            ("DESKD_JOBS_BACKOFF_BASE", "5s"),
        ]),
    )
    .expect("loads");
    assert_eq!(cfg.smtp.host, "mail.example.com");
    assert_eq!(cfg.smtp.port, 465);
    assert_eq!(cfg.smtp.tls, SmtpTls::Tls);
    assert_eq!(cfg.smtp.password.as_ref().map(|p| p.expose_secret()), Some("hunter2"));
    assert!(!cfg.jobs.run_in_serve);
    assert_eq!(cfg.jobs.concurrency, 8);
    assert_eq!(cfg.jobs.backoff_base, Duration::from_secs(5));

    for (pairs, key) in [
        (vec![("DESKD_SMTP_TLS", "ssl")], "smtp.tls"),
        (vec![("DESKD_SMTP_FROM", "not a mailbox")], "smtp.from"),
        (vec![("DESKD_SMTP_USERNAME", "deskd")], "smtp.password"),
        (vec![("DESKD_JOBS_CONCURRENCY", "0")], "jobs.concurrency"),
        (vec![("DESKD_JOBS_POLL_INTERVAL", "0s")], "jobs.poll_interval"),
        (vec![("DESKD_JOBS_BACKOFF_MAX", "1s")], "jobs.backoff_max"),
    ] {
        let err = Config::load(None, env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
}

#[test]
fn exports_section_selects_the_store_and_is_validated() {
    let cfg = Config::load(None, env(&[])).expect("defaults load");
    assert_eq!(cfg.exports.backend, ExportsBackend::Fs);
    assert_eq!(cfg.exports.dir, std::path::PathBuf::from("./.deskd/exports"));
    assert_eq!(cfg.exports.s3_region, "us-east-1");

    let cfg = Config::load(
        None,
        env(&[
            ("DESKD_EXPORTS_BACKEND", "s3"),
            ("DESKD_EXPORTS_S3_BUCKET", "helpdesk-exports"),
            ("DESKD_EXPORTS_S3_REGION", "eu-west-1"),
            ("DESKD_EXPORTS_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("DESKD_EXPORTS_S3_ALLOW_HTTP", "true"),
            ("DESKD_EXPORTS_S3_PREFIX", "deskd/exports"),
            ("DESKD_EXPORTS_S3_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("DESKD_EXPORTS_S3_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("DESKD_EXPORTS_S3_TIMEOUT", "5s"),
        ]),
    )
    .expect("loads");
    let e = &cfg.exports;
    assert_eq!(e.backend, ExportsBackend::S3);
    assert_eq!(e.s3_bucket, "helpdesk-exports");
    assert_eq!(e.s3_region, "eu-west-1");
    assert_eq!(e.s3_endpoint, "http://127.0.0.1:9000");
    assert!(e.s3_allow_http);
    assert_eq!(e.s3_prefix, "deskd/exports");
    assert_eq!(e.s3_secret_access_key.expose_secret(), "wJalrXUtnFEMI");
    assert_eq!(e.s3_timeout, Duration::from_secs(5));
    assert!(
        !format!("{cfg:?}").contains("wJalrXUtnFEMI"),
        "the secret key must not appear in Debug output"
    );

    let s3 = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![("DESKD_EXPORTS_BACKEND", "s3"), ("DESKD_EXPORTS_S3_BUCKET", "b")];
        pairs.extend_from_slice(extra);
        pairs
    };
    for (pairs, key) in [
        (vec![("DESKD_EXPORTS_BACKEND", "gcs")], "exports.backend"),
        (vec![("DESKD_EXPORTS_BACKEND", "s3")], "exports.s3_bucket"),
        (
            s3(&[("DESKD_EXPORTS_S3_ENDPOINT", "http://minio:9000")]),
            "exports.s3_endpoint",
        ),
        (
            s3(&[("DESKD_EXPORTS_S3_ENDPOINT", "minio:9000")]),
            "exports.s3_endpoint",
        ),
        (
            s3(&[("DESKD_EXPORTS_S3_ACCESS_KEY_ID", "AKID")]),
            "exports.s3_secret_access_key",
        ),
        (s3(&[("DESKD_EXPORTS_S3_TIMEOUT", "0s")]), "exports.s3_timeout"),
    ] {
        let err = Config::load(None, env(&pairs)).expect_err("must fail");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    // The same store settings, but on the local filesystem: the s3 keys are ignored.
    Config::load(None, env(&[("DESKD_EXPORTS_S3_ENDPOINT", "minio:9000")])).expect("fs ignores s3 keys");
}

#[test]
fn the_documented_sample_file_loads_and_names_every_section() {
    let doc = include_str!("../../docs/configuration.md");
    let start = doc
        .find("# deskd.toml: every key")
        .expect("the sample file in docs/configuration.md");
    let end = start + doc[start..].find("```").expect("the sample's closing fence");
    let dir = tempfile_dir();
    let path = dir.join("deskd.toml");
    std::fs::write(&path, &doc[start..end]).expect("write sample");
    let cfg = Config::load(Some(&path), env(&[]));
    let _ = std::fs::remove_dir_all(&dir);
    cfg.expect("the documented sample loads");
    for section in SECTIONS {
        assert!(
            doc[start..end].contains(&format!("[{section}]")),
            "the sample lacks [{section}]"
        );
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("deskd-config-sample-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
