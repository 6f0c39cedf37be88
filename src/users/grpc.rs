//! The `deskd.users.v1.UsersService` handlers: decode and validate, call the
//! service once, encode. The authorization layer has already checked each
//! method's entry of the permission table; field-level rules live in the
//! service. Proto messages are destructured without `..`.

mod convert;

use std::sync::Arc;

use secrecy::ExposeSecret as _;
use tonic::{Request, Response, Status};

use super::service::UsersService;
use crate::{
    grpc_util::{context, parse_uuid, run, with_cache_status},
    proto::users::v1::{
        CreateApiKeyRequest, CreateApiKeyResponse, CreateUserRequest, CreateUserResponse, DeactivateUserRequest,
        DeactivateUserResponse, GetCurrentUserRequest, GetCurrentUserResponse, GetUserRequest, GetUserResponse,
        ListApiKeysRequest, ListApiKeysResponse, ListUsersRequest, ListUsersResponse, ReactivateUserRequest,
        ReactivateUserResponse, RevokeApiKeyRequest, RevokeApiKeyResponse, UpdateUserRequest, UpdateUserResponse,
        users_service_server,
    },
    tenancy::{PrincipalKind, UserId},
};

/// The gRPC face of `UsersService`.
#[derive(Clone)]
pub struct UsersGrpc {
    svc: Arc<UsersService>,
}

impl UsersGrpc {
    /// Wraps the service.
    pub fn new(svc: UsersService) -> Self {
        Self { svc: Arc::new(svc) }
    }

    /// The tonic server for this service.
    pub fn into_server(self, cfg: &crate::config::ServerConfig) -> users_service_server::UsersServiceServer<Self> {
        crate::grpc_util::configure_codec!(users_service_server::UsersServiceServer::new(self), cfg)
    }
}

pub use convert::*;

#[tonic::async_trait]
impl users_service_server::UsersService for UsersGrpc {
    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<GetUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let GetUserRequest { id } = req.into_inner();
        run(&rid, async {
            let id = parse_uuid("id", &id).map_err(one)?;
            let u = self.svc.get(&ctx, UserId(id)).await?;
            Ok(GetUserResponse {
                user: Some(user_to_proto(u)),
            })
        })
        .await
    }

    async fn list_users(&self, req: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let r = req.into_inner();
        run(&rid, async {
            let (filter, size, token) = validate_list(r)?;
            let page = self.svc.list(&ctx, &filter, size, &token).await?;
            Ok(ListUsersResponse {
                users: page.items.into_iter().map(user_to_proto).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn create_user(&self, req: Request<CreateUserRequest>) -> Result<Response<CreateUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let CreateUserRequest { user, request_id } = req.into_inner();
        run(&rid, async {
            let (new, request_id) = validate_create(user, &request_id)?;
            let u = self.svc.create(&ctx, new, request_id).await?;
            Ok(CreateUserResponse {
                user: Some(user_to_proto(u)),
            })
        })
        .await
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> Result<Response<UpdateUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let UpdateUserRequest { user, update_mask } = req.into_inner();
        run(&rid, async {
            let (id, etag, patch) = validate_update(user, update_mask)?;
            let u = self.svc.update(&ctx, id, etag.as_deref(), &patch).await?;
            Ok(UpdateUserResponse {
                user: Some(user_to_proto(u)),
            })
        })
        .await
    }

    async fn deactivate_user(
        &self,
        req: Request<DeactivateUserRequest>,
    ) -> Result<Response<DeactivateUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let DeactivateUserRequest { id, etag } = req.into_inner();
        run(&rid, async {
            let id = parse_uuid("id", &id).map_err(one)?;
            let etag = (!etag.is_empty()).then_some(etag);
            let u = self.svc.set_active(&ctx, UserId(id), etag.as_deref(), false).await?;
            Ok(DeactivateUserResponse {
                user: Some(user_to_proto(u)),
            })
        })
        .await
    }

    async fn reactivate_user(
        &self,
        req: Request<ReactivateUserRequest>,
    ) -> Result<Response<ReactivateUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let ReactivateUserRequest { id, etag } = req.into_inner();
        run(&rid, async {
            let id = parse_uuid("id", &id).map_err(one)?;
            let etag = (!etag.is_empty()).then_some(etag);
            let u = self.svc.set_active(&ctx, UserId(id), etag.as_deref(), true).await?;
            Ok(ReactivateUserResponse {
                user: Some(user_to_proto(u)),
            })
        })
        .await
    }

    async fn get_current_user(
        &self,
        req: Request<GetCurrentUserRequest>,
    ) -> Result<Response<GetCurrentUserResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let GetCurrentUserRequest {} = req.into_inner();
        let (me, status) = self.svc.current(&ctx).await.map_err(|e| e.into_status(&rid))?;
        let api_key_id = match me.principal.kind {
            PrincipalKind::ServiceAccount { api_key_id } => api_key_id.to_string(),
            PrincipalKind::Person { .. } => String::new(),
        };
        let mut permissions: Vec<String> = me
            .principal
            .permissions
            .to_vec()
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        permissions.sort();
        let mut res = Response::new(GetCurrentUserResponse {
            user: Some(user_to_proto(me.user)),
            tenant_id: me.principal.tenant_id.to_string(),
            permissions,
            api_key_id,
        });
        with_cache_status(&mut res, status);
        Ok(res)
    }

    async fn create_api_key(
        &self,
        req: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let CreateApiKeyRequest { api_key } = req.into_inner();
        run(&rid, async {
            let new = validate_new_key(api_key)?;
            let tenant = ctx.principal.tenant_id;
            let (key, secret) = self.svc.create_api_key(&ctx, new).await?;
            Ok(CreateApiKeyResponse {
                api_key: Some(key_to_proto(tenant, key)),
                key: secret.expose_secret().to_string(),
            })
        })
        .await
    }

    async fn list_api_keys(&self, req: Request<ListApiKeysRequest>) -> Result<Response<ListApiKeysResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let ListApiKeysRequest {
            page_size: size,
            page_token,
            show_revoked,
        } = req.into_inner();
        run(&rid, async {
            let size = page_size(size).map_err(one)?;
            let tenant = ctx.principal.tenant_id;
            let page = self.svc.list_api_keys(&ctx, show_revoked, size, &page_token).await?;
            Ok(ListApiKeysResponse {
                api_keys: page.items.into_iter().map(|k| key_to_proto(tenant, k)).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        req: Request<RevokeApiKeyRequest>,
    ) -> Result<Response<RevokeApiKeyResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let RevokeApiKeyRequest { id } = req.into_inner();
        run(&rid, async {
            let id = parse_uuid("id", &id).map_err(one)?;
            let tenant = ctx.principal.tenant_id;
            let key = self.svc.revoke_api_key(&ctx, id).await?;
            Ok(RevokeApiKeyResponse {
                api_key: Some(key_to_proto(tenant, key)),
            })
        })
        .await
    }
}
