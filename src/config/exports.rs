//! The `exports` section: where ticket exports are written.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::serialize_secret;

/// Which object store export files go to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExportsBackend {
    /// A directory on the local filesystem (`exports.dir`).
    Fs,
    /// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2, …): the `s3_*` keys.
    S3,
}

/// Where ticket exports are written (`[exports]`), through the `object_store`
/// crate: a local directory by default, or an S3-compatible bucket. Files are
/// `<tenant>/<operation id>.<ext>` under the directory or the key prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportsConfig {
    /// `fs` or `s3` (`DESKD_EXPORTS_BACKEND`).
    pub backend: ExportsBackend,
    /// With `fs`: the directory export files go under (`DESKD_EXPORTS_DIR`),
    /// created when missing.
    pub dir: PathBuf,
    /// With `s3`: the bucket (`DESKD_EXPORTS_S3_BUCKET`). It must exist.
    pub s3_bucket: String,
    /// With `s3`: the bucket's region (`DESKD_EXPORTS_S3_REGION`).
    pub s3_region: String,
    /// With `s3`: the endpoint of an S3-compatible service, such as
    /// `https://minio.internal:9000` (`DESKD_EXPORTS_S3_ENDPOINT`); empty: AWS.
    pub s3_endpoint: String,
    /// With `s3`: a key prefix every export goes under (`DESKD_EXPORTS_S3_PREFIX`), e.g. `deskd/exports`.
    pub s3_prefix: String,
    /// With `s3`: the access key id (`DESKD_EXPORTS_S3_ACCESS_KEY_ID`). Empty:
    /// the standard AWS chain (`AWS_*` variables, web identity, instance metadata).
    pub s3_access_key_id: String,
    /// With `s3`: the secret access key (`DESKD_EXPORTS_S3_SECRET_ACCESS_KEY`).
    #[serde(serialize_with = "serialize_secret")]
    pub s3_secret_access_key: SecretString,
    /// With `s3`: a session token for temporary credentials (`DESKD_EXPORTS_S3_SESSION_TOKEN`).
    #[serde(serialize_with = "serialize_secret")]
    pub s3_session_token: SecretString,
    /// With `s3`: allow a plain-HTTP endpoint (`DESKD_EXPORTS_S3_ALLOW_HTTP`);
    /// for a store on loopback or a private network only.
    pub s3_allow_http: bool,
    /// With `s3`: address the bucket as `https://<bucket>.<endpoint>` instead
    /// of `https://<endpoint>/<bucket>` (`DESKD_EXPORTS_S3_VIRTUAL_HOSTED_STYLE`).
    pub s3_virtual_hosted_style: bool,
    /// With `s3`: the bound on one HTTP request to the store (`DESKD_EXPORTS_S3_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub s3_timeout: Duration,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self {
            backend: ExportsBackend::Fs,
            dir: PathBuf::from("./.deskd/exports"),
            s3_bucket: String::new(),
            s3_region: "us-east-1".to_string(),
            s3_endpoint: String::new(),
            s3_prefix: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: SecretString::from(""),
            s3_session_token: SecretString::from(""),
            s3_allow_http: false,
            s3_virtual_hosted_style: false,
            s3_timeout: Duration::from_secs(30),
        }
    }
}
