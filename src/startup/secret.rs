//! The deployment's server secret and where it comes from.

use secrecy::ExposeSecret;

use crate::{auth::jwt, config::Config};

/// The deployment's server secret, from which page-token MACs and (without a
/// pepper) API key digests are derived. Every replica must share it.
pub struct ServerSecret {
    /// The secret.
    pub secret: secrecy::SecretString,
    /// Whether it is the local development secret file (not shared).
    pub from_dev_file: bool,
}

/// `secret_key` when configured, else the JWT HS256 secret, else the
/// development secret file.
pub fn server_secret(cfg: &Config) -> std::io::Result<ServerSecret> {
    if !cfg.secret_key.expose_secret().is_empty() {
        return Ok(ServerSecret {
            secret: cfg.secret_key.clone(),
            from_dev_file: false,
        });
    }
    let (secret, source) = jwt::load_secret(&cfg.jwt)?;
    Ok(ServerSecret {
        secret,
        from_dev_file: matches!(source, jwt::SecretSource::DevFile(_)),
    })
}
