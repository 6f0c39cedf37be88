//! Layer 6: authentication.
//!
//! Reads the credential — `authorization: Bearer <jwt>`, `authorization:
//! Bearer dsk_…` or `x-api-key: dsk_…` — and puts a `Credential` in the
//! request extensions: a JWT fully verified, an API key parsed (its secret
//! is checked against the stored digest by the tenant layer). Pure CPU, no
//! I/O: it runs before the tenant layer so forged or expired tokens never
//! cost a database lookup.

use futures_util::future::BoxFuture;
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::{
    auth::{Credential, JwtKeys, apikey},
    error::AppError,
};

/// The metadata key an API key may also be sent in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Requires a valid bearer token on every non-public RPC.
#[derive(Clone)]
pub struct AuthnLayer {
    /// The verification keys.
    pub keys: std::sync::Arc<JwtKeys>,
}

/// Extracts the token of an `authorization` value, scheme case-insensitive.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Middleware for AuthnLayer {
    fn handle<S>(&self, mut req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        if is_public(req.uri().path()) {
            return Box::pin(next.call(req));
        }
        let authorization = req.headers().get(http::header::AUTHORIZATION);
        let api_key = req.headers().get(API_KEY_HEADER);
        let outcome = match (authorization, api_key) {
            (None, None) => Err(AppError::Unauthenticated {
                reason: "CREDENTIAL_MISSING",
                description: "send `authorization: Bearer <token or API key>` or `x-api-key: <API key>`",
            }),
            (Some(_), Some(_)) => Err(AppError::Unauthenticated {
                reason: "CREDENTIAL_AMBIGUOUS",
                description: "send one credential: either authorization or x-api-key",
            }),
            (None, Some(v)) => match v.to_str() {
                Ok(raw) => apikey::parse(raw.trim()).map(Credential::ApiKey),
                Err(_) => apikey::parse("").map(Credential::ApiKey),
            },
            (Some(v), None) => match v.to_str().ok().and_then(bearer_token) {
                None => Err(AppError::Unauthenticated {
                    reason: "CREDENTIAL_MALFORMED",
                    description: "the authorization metadata is not `Bearer <token>`",
                }),
                Some(token) if apikey::looks_like_key(token) => apikey::parse(token).map(Credential::ApiKey),
                Some(token) => self.keys.verify(token).map(Credential::Jwt),
            },
        };
        match outcome {
            Ok(authenticated) => {
                req.extensions_mut().insert(authenticated);
                Box::pin(next.call(req))
            }
            Err(e) => {
                let id = RequestId::of(&req);
                Box::pin(async move { Ok(error_response(e, &id)) })
            }
        }
    }
}
