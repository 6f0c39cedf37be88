//! The object store exports are written to: a local directory or an
//! S3-compatible bucket, chosen by `[exports]`.

use std::{path::PathBuf, sync::Arc};

use object_store::{
    ClientOptions, ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem, path::Path, prefix::PrefixStore,
};
use secrecy::ExposeSecret as _;

use crate::config::{ExportsBackend, ExportsConfig};

/// Where export files go. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub enum ExportStore {
    /// A local directory, opened (and created when missing) by each export,
    /// so a directory that appears later is picked up without a restart.
    Fs {
        /// The directory.
        dir: PathBuf,
    },
    /// An S3-compatible bucket, with one HTTP client (and connection pool)
    /// shared by every export.
    S3 {
        /// The store, already scoped to the key prefix.
        store: Arc<dyn ObjectStore>,
        /// `s3://<bucket>/<prefix>`, the start of every result URI.
        base_uri: String,
    },
}

/// rustls needs a process-wide crypto provider for reqwest's client; deskd
/// uses ring (as lettre does). Installing twice is harmless.
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl ExportStore {
    /// The store `config` describes. Fails on a configuration the S3 client
    /// refuses (it does not contact the store: a missing bucket shows up as
    /// a failed export, retried like any other).
    pub fn from_config(config: &ExportsConfig) -> Result<ExportStore, String> {
        match config.backend {
            ExportsBackend::Fs => Ok(ExportStore::Fs {
                dir: config.dir.clone(),
            }),
            ExportsBackend::S3 => {
                ensure_crypto_provider();
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.s3_bucket)
                    .with_region(&config.s3_region)
                    .with_allow_http(config.s3_allow_http)
                    .with_virtual_hosted_style_request(config.s3_virtual_hosted_style)
                    .with_client_options(
                        ClientOptions::new()
                            .with_timeout(config.s3_timeout)
                            .with_connect_timeout(config.s3_timeout.min(std::time::Duration::from_secs(10)))
                            .with_allow_http(config.s3_allow_http),
                    );
                if !config.s3_endpoint.is_empty() {
                    b = b.with_endpoint(&config.s3_endpoint);
                }
                if !config.s3_access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&config.s3_access_key_id)
                        .with_secret_access_key(config.s3_secret_access_key.expose_secret());
                    let token = config.s3_session_token.expose_secret();
                    if !token.is_empty() {
                        b = b.with_token(token);
                    }
                }
                let s3 = b.build().map_err(|e| format!("configuring the S3 export store: {e}"))?;
                let prefix = Path::from(config.s3_prefix.as_str());
                let base_uri = if prefix.as_ref().is_empty() {
                    format!("s3://{}", config.s3_bucket)
                } else {
                    format!("s3://{}/{}", config.s3_bucket, prefix)
                };
                let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                };
                Ok(ExportStore::S3 { store, base_uri })
            }
        }
    }

    /// The store to write with.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, String> {
        match self {
            ExportStore::Fs { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating the export directory {}: {e}", dir.display()))?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("opening the export directory {}: {e}", dir.display()))?;
                Ok(Arc::new(fs))
            }
            ExportStore::S3 { store, .. } => Ok(store.clone()),
        }
    }

    /// Where `path` is, as a URI: `file:///…` or `s3://bucket/prefix/…`.
    pub fn uri(&self, path: &Path) -> String {
        match self {
            ExportStore::Fs { dir } => {
                let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
                format!("file://{}", abs.join(path.as_ref()).display())
            }
            ExportStore::S3 { base_uri, .. } => format!("{base_uri}/{path}"),
        }
    }
}
