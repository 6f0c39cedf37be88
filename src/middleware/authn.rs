//! Layer 6: authentication.
//!
//! Verifies the `authorization: Bearer <jwt>` credential and puts the
//! verified `Authenticated` in the request extensions. Pure CPU, no I/O:
//! it runs before the tenant layer so forged or expired tokens never cost
//! a database lookup.

use futures_util::future::BoxFuture;
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::{auth::JwtKeys, error::AppError};

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
        let outcome = match req.headers().get(http::header::AUTHORIZATION) {
            None => Err(AppError::Unauthenticated {
                reason: "CREDENTIAL_MISSING",
                description: "send `authorization: Bearer <token>`",
            }),
            Some(v) => match v.to_str().ok().and_then(bearer_token) {
                None => Err(AppError::Unauthenticated {
                    reason: "CREDENTIAL_MALFORMED",
                    description: "the authorization metadata is not `Bearer <token>`",
                }),
                Some(token) => self.keys.verify(token),
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
