//! Layer 9: method authorization from the permission table.
//!
//! Innermost, right before the handler: it needs the resolved `Principal`,
//! and every RPC of every deskd service passes it, so no method can be
//! reached without its table entry being checked (a deskd method missing
//! from the table is refused). Handlers add field-level checks with the
//! same `authorize` function.

use futures_util::future::BoxFuture;
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::{auth::permissions::authorize_method, error::AppError, tenancy::Principal};

/// Checks the method's requirement for the principal.
#[derive(Clone, Default)]
pub struct AuthorizeLayer;

impl Middleware for AuthorizeLayer {
    fn handle<S>(&self, req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        if is_public(req.uri().path()) {
            return Box::pin(next.call(req));
        }
        let verdict = match req.extensions().get::<Principal>() {
            Some(p) => authorize_method(p, req.uri().path()),
            // Unreachable while the tenant layer sits above: fail closed.
            None => Err(AppError::Unauthenticated {
                reason: "CREDENTIAL_MISSING",
                description: "no authenticated principal",
            }),
        };
        match verdict {
            Ok(()) => Box::pin(next.call(req)),
            Err(e) => {
                let id = RequestId::of(&req);
                Box::pin(async move { Ok(error_response(e, &id)) })
            }
        }
    }
}
