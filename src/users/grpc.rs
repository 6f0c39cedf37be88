//! The `deskd.users.v1.UsersService` handlers: decode and validate, call the
//! service once, encode. The authorization layer has already checked each
//! method's entry of the permission table; field-level rules live in the
//! service. Proto messages are destructured without `..`.

use std::sync::Arc;

use secrecy::ExposeSecret as _;
use tonic::{Request, Response, Status};

use super::{
    model::{self, ApiKey, Field, Role, User, UserFilter, UserKind, UserPatch},
    service::{NewApiKey, NewUser, UsersService},
};
use crate::{
    auth::apikey,
    error::{AppError, FieldViolation},
    grpc_util::{
        Violations, bad_mask_path, context, from_timestamp, mask_paths, parse_optional_uuid, parse_uuid, run,
        to_timestamp, with_cache_status,
    },
    proto::users::v1::{
        self as pb, CreateApiKeyRequest, CreateApiKeyResponse, CreateUserRequest, CreateUserResponse,
        DeactivateUserRequest, DeactivateUserResponse, GetCurrentUserRequest, GetCurrentUserResponse, GetUserRequest,
        GetUserResponse, ListApiKeysRequest, ListApiKeysResponse, ListUsersRequest, ListUsersResponse,
        ReactivateUserRequest, ReactivateUserResponse, RevokeApiKeyRequest, RevokeApiKeyResponse, UpdateUserRequest,
        UpdateUserResponse, users_service_server,
    },
    tenancy::{PrincipalKind, TenantId, UserId},
    tickets::model::PAGE_SIZE_DEFAULT,
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

fn role_to_proto(r: Option<Role>) -> pb::Role {
    match r {
        None => pb::Role::Unspecified,
        Some(Role::Admin) => pb::Role::Admin,
        Some(Role::Agent) => pb::Role::Agent,
        Some(Role::Viewer) => pb::Role::Viewer,
    }
}

fn role_from_proto(field: &str, v: i32) -> Result<Option<Role>, FieldViolation> {
    match pb::Role::try_from(v) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(pb::Role::Agent) => Ok(Some(Role::Agent)),
        Ok(pb::Role::Viewer) => Ok(Some(Role::Viewer)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown role {v}"),
        )),
    }
}

fn kind_to_proto(k: UserKind) -> pb::UserKind {
    match k {
        UserKind::Person => pb::UserKind::Person,
        UserKind::ServiceAccount => pb::UserKind::ServiceAccount,
    }
}

fn kind_from_proto(field: &str, v: i32) -> Result<Option<UserKind>, FieldViolation> {
    match pb::UserKind::try_from(v) {
        Ok(pb::UserKind::Unspecified) => Ok(None),
        Ok(pb::UserKind::Person) => Ok(Some(UserKind::Person)),
        Ok(pb::UserKind::ServiceAccount) => Ok(Some(UserKind::ServiceAccount)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown kind {v}"),
        )),
    }
}

/// Model → wire.
pub fn user_to_proto(u: User) -> pb::User {
    let etag = u.etag();
    let User {
        id,
        email,
        display_name,
        kind,
        role,
        active,
        create_time,
        update_time,
        version: _,
    } = u;
    pb::User {
        id: id.to_string(),
        email,
        display_name,
        role: role_to_proto(role) as i32,
        active,
        kind: kind_to_proto(kind) as i32,
        create_time: Some(to_timestamp(create_time)),
        update_time: Some(to_timestamp(update_time)),
        etag,
    }
}

/// Model → wire (never with a secret: the model has none).
pub fn key_to_proto(tenant: TenantId, k: ApiKey) -> pb::ApiKey {
    let ApiKey {
        id,
        display_name,
        service_account_id,
        scopes,
        create_time,
        expire_time,
        last_use_time,
        revoke_time,
    } = k;
    pb::ApiKey {
        id: id.to_string(),
        display_name,
        service_account_id: service_account_id.to_string(),
        scopes: scopes.iter().map(|p| p.as_str().to_string()).collect(),
        key_prefix: apikey::prefix(tenant, id),
        create_time: Some(to_timestamp(create_time)),
        expire_time: expire_time.map(to_timestamp),
        last_use_time: last_use_time.map(to_timestamp),
        revoke_time: revoke_time.map(to_timestamp),
    }
}

fn one(v: FieldViolation) -> AppError {
    AppError::InvalidArgument(vec![v])
}

fn page_size(requested: i32) -> Result<u32, FieldViolation> {
    crate::tickets::model::page_size(requested)
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_create(user: Option<pb::User>, request_id: &str) -> Result<(NewUser, Option<uuid::Uuid>), AppError> {
    let Some(user) = user else {
        return Err(AppError::invalid("user", "REQUIRED", "the user is required"));
    };
    let pb::User {
        id: _,
        email,
        display_name,
        role,
        active: _,
        kind: _,
        create_time: _,
        update_time: _,
        etag: _,
    } = user;
    let mut v = Violations::default();
    let email = v.check(model::normalize_email("user.email", &email));
    let display_name = v.check(model::validate_display_name("user.display_name", &display_name));
    let role = match v.check(role_from_proto("user.role", role)) {
        Some(Some(r)) => Some(r),
        Some(None) => {
            v.0.push(FieldViolation::new("user.role", "REQUIRED", "a person needs a role"));
            None
        }
        None => None,
    };
    let request_id = v.check(parse_optional_uuid("request_id", request_id));
    v.finish()?;
    match (email, display_name, role, request_id) {
        (Some(email), Some(display_name), Some(role), Some(rid)) => Ok((
            NewUser {
                email,
                display_name,
                role,
            },
            rid,
        )),
        _ => Err(AppError::internal(anyhow::anyhow!("validation passed without values"))),
    }
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_update(
    user: Option<pb::User>,
    mask: Option<prost_types::FieldMask>,
) -> Result<(UserId, Option<String>, UserPatch), AppError> {
    let Some(user) = user else {
        return Err(AppError::invalid("user", "REQUIRED", "the user is required"));
    };
    let pb::User {
        id,
        email,
        display_name,
        role,
        active,
        kind: _,
        create_time: _,
        update_time: _,
        etag,
    } = user;
    let mut v = Violations::default();
    let id = v.check(parse_uuid("user.id", &id));
    let paths = mask_paths(mask, &mut v);
    let mut patch = UserPatch::default();
    for (i, path) in paths.iter().enumerate() {
        let Some(field) = Field::parse(path) else {
            v.0.push(bad_mask_path(
                i,
                path,
                &["id", "kind", "create_time", "update_time", "etag"],
            ));
            continue;
        };
        match field {
            Field::DisplayName => {
                patch.display_name = v.check(model::validate_display_name("user.display_name", &display_name))
            }
            Field::Email => patch.email = v.check(model::normalize_email("user.email", &email)),
            Field::Role => {
                patch.role = match v.check(role_from_proto("user.role", role)) {
                    Some(Some(r)) => Some(r),
                    Some(None) => {
                        v.0.push(FieldViolation::new(
                            "user.role",
                            "REQUIRED",
                            "a role must be given when masked",
                        ));
                        None
                    }
                    None => None,
                }
            }
            Field::Active => patch.active = Some(active),
        }
    }
    v.finish()?;
    let id = id.ok_or_else(|| AppError::internal(anyhow::anyhow!("validation passed without an id")))?;
    Ok((UserId(id), (!etag.is_empty()).then_some(etag), patch))
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_list(r: ListUsersRequest) -> Result<(UserFilter, u32, String), AppError> {
    let ListUsersRequest {
        page_size: size,
        page_token,
        role,
        active,
        email_prefix,
        kind,
    } = r;
    let mut v = Violations::default();
    let size = v.check(page_size(size));
    let role = v.check(role_from_proto("role", role)).flatten();
    let kind = v.check(kind_from_proto("kind", kind)).flatten();
    let email_prefix = email_prefix.trim().to_lowercase();
    if email_prefix.len() > 320 {
        v.0.push(FieldViolation::new(
            "email_prefix",
            "TOO_LONG",
            "at most 320 characters",
        ));
    }
    v.finish()?;
    Ok((
        UserFilter {
            role,
            active,
            email_prefix: (!email_prefix.is_empty()).then_some(email_prefix),
            kind,
        },
        size.unwrap_or(PAGE_SIZE_DEFAULT),
        page_token,
    ))
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_new_key(key: Option<pb::ApiKey>) -> Result<NewApiKey, AppError> {
    let Some(key) = key else {
        return Err(AppError::invalid("api_key", "REQUIRED", "the API key is required"));
    };
    let pb::ApiKey {
        id: _,
        display_name,
        service_account_id,
        scopes,
        key_prefix: _,
        create_time: _,
        expire_time,
        last_use_time: _,
        revoke_time: _,
    } = key;
    let mut v = Violations::default();
    let name = display_name.trim().to_string();
    if name.is_empty() {
        v.0.push(FieldViolation::new(
            "api_key.display_name",
            "REQUIRED",
            "say what the key is for",
        ));
    }
    let name = v.check(model::validate_display_name("api_key.display_name", &name));
    let sa = v.check(parse_optional_uuid("api_key.service_account_id", &service_account_id));
    let scopes = v.check_many(model::parse_scopes("api_key.scopes", &scopes));
    let expire_time = v.check(
        expire_time
            .map(|t| from_timestamp("api_key.expire_time", t))
            .transpose(),
    );
    v.finish()?;
    match (name, sa, scopes, expire_time) {
        (Some(display_name), Some(sa), Some(scopes), Some(expire_time)) => Ok(NewApiKey {
            display_name,
            service_account_id: sa.map(UserId),
            scopes,
            expire_time,
        }),
        _ => Err(AppError::internal(anyhow::anyhow!("validation passed without values"))),
    }
}

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
