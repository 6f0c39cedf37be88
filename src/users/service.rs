//! User and API key operations: one function per RPC, each one transaction.
//! Writes that change what a credential may do invalidate the principal
//! cache after they commit. CreateUser enqueues the welcome e-mail in its
//! transaction.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    jobs::WelcomeEmail,
    model::{API_KEY_RESOURCE_TYPE, ApiKey, RESOURCE_TYPE, Role, User, UserFilter, UserKind, UserPatch},
    store,
};
use crate::{
    auth::{Permission, apikey::KeyHasher, authorize},
    cache::CacheStatus,
    error::{AppError, FieldViolation},
    idempotency::{self, Claim},
    jobs::queue::{self, EnqueueOptions},
    pagination::{Cursor, PageTokens, fingerprint},
    tenancy::{Ctx, Principal, TenantDirectory, TenantTx, UserId, tx::Budget},
};

/// A page of results.
#[derive(Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's token, when there is one.
    pub next_page_token: Option<String>,
}

/// Validated input of CreateUser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Normalised e-mail.
    pub email: String,
    /// Trimmed display name.
    pub display_name: String,
    /// Role.
    pub role: Role,
}

/// Validated input of CreateApiKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// What the key is for.
    pub display_name: String,
    /// An existing service account, or `None` to create one.
    pub service_account_id: Option<UserId>,
    /// Granted scopes.
    pub scopes: Vec<Permission>,
    /// Expiry.
    pub expire_time: Option<OffsetDateTime>,
}

/// Who the caller is (GetCurrentUser).
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The caller.
    pub user: User,
    /// The caller's principal.
    pub principal: Principal,
}

/// The Users operations.
#[derive(Clone)]
pub struct UsersService {
    pool: PgPool,
    tokens: PageTokens,
    statement_cap: Duration,
    directory: TenantDirectory,
    hasher: KeyHasher,
}

const CREATE_OPERATION: &str = "users.create";

use crate::etag::now_micros as now;

fn user_not_found(id: UserId) -> AppError {
    AppError::NotFound {
        resource_type: RESOURCE_TYPE,
        name: id.to_string(),
    }
}

fn key_not_found(id: Uuid) -> AppError {
    AppError::NotFound {
        resource_type: API_KEY_RESOURCE_TYPE,
        name: id.to_string(),
    }
}

fn email_taken(email: &str) -> AppError {
    AppError::AlreadyExists {
        resource_type: RESOURCE_TYPE,
        name: email.to_string(),
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

impl UsersService {
    /// The service.
    pub fn new(
        pool: PgPool,
        tokens: PageTokens,
        statement_cap: Duration,
        directory: TenantDirectory,
        hasher: KeyHasher,
    ) -> Self {
        Self {
            pool,
            tokens,
            statement_cap,
            directory,
            hasher,
        }
    }

    async fn begin(&self, ctx: &Ctx) -> Result<TenantTx, AppError> {
        TenantTx::begin(
            &self.pool,
            ctx.principal.tenant_id,
            Budget::new(ctx.deadline, self.statement_cap),
        )
        .await
    }

    /// GetUser.
    pub async fn get(&self, ctx: &Ctx, id: UserId) -> Result<User, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let u = store::get_user(tx.conn(), tenant, id).await?;
        tx.finish_read();
        u.ok_or_else(|| user_not_found(id))
    }

    /// ListUsers, oldest first.
    pub async fn list(&self, ctx: &Ctx, filter: &UserFilter, size: u32, token: &str) -> Result<Page<User>, AppError> {
        let fp = fingerprint(&[&ctx.principal.tenant_id.to_string(), "users", &filter.canonical()]);
        let after = (!token.is_empty())
            .then(|| self.tokens.decode(&fp, token))
            .transpose()?;
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut items = store::list_users(tx.conn(), tenant, filter, after, i64::from(size) + 1).await?;
        tx.finish_read();
        let next_page_token = self.next_token(&fp, &mut items, size, |u| (micros(u.create_time), u.id.0));
        Ok(Page { items, next_page_token })
    }

    fn next_token<T>(
        &self,
        fp: &[u8; 16],
        items: &mut Vec<T>,
        size: u32,
        key: impl Fn(&T) -> (i64, Uuid),
    ) -> Option<String> {
        if items.len() <= size as usize {
            return None;
        }
        items.truncate(size as usize);
        items.last().map(|last| {
            let (micros, id) = key(last);
            self.tokens.encode(fp, Cursor { micros, id })
        })
    }

    /// CreateUser, idempotent per `request_id`.
    pub async fn create(&self, ctx: &Ctx, new: NewUser, request_id: Option<Uuid>) -> Result<User, AppError> {
        let user = User::person(
            UserId(Uuid::now_v7()),
            new.email.clone(),
            new.display_name.clone(),
            new.role,
            now(),
        );
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        if let Some(rid) = request_id {
            let digest = crate::pagination::fingerprint(&[&new.email, &new.display_name, new.role.as_str()]).to_vec();
            let response = serde_json::to_value(&user).map_err(AppError::internal)?;
            if let Claim::Existing { request_hash, response } =
                idempotency::claim(tx.conn(), tenant, CREATE_OPERATION, rid, &digest, &response).await?
            {
                tx.commit().await?;
                if request_hash != digest {
                    return Err(AppError::invalid(
                        "request_id",
                        "REQUEST_ID_REUSED",
                        "this request_id was used within 24 hours for a different request",
                    ));
                }
                return serde_json::from_value(response).map_err(AppError::internal);
            }
        }
        if !store::insert_user(tx.conn(), tenant, &user).await? {
            return Err(email_taken(&user.email));
        }
        // In the same transaction: the e-mail goes out if and only if the user exists.
        let welcome = WelcomeEmail { user_id: user.id };
        let opts = EnqueueOptions {
            unique_key: Some(welcome.unique_key()),
            run_at: None,
        };
        queue::enqueue(tx.conn(), tenant, &welcome, opts).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// UpdateUser: anyone may rename themselves; everything else needs
    /// `users:write`. Nobody can lock themselves out (own role or activation).
    pub async fn update(&self, ctx: &Ctx, id: UserId, etag: Option<&str>, patch: &UserPatch) -> Result<User, AppError> {
        let me = &ctx.principal;
        if id != me.user_id {
            authorize(me, Permission::UsersWrite)?;
        }
        for field in patch.fields() {
            if let Some(p) = field.requires() {
                authorize(me, p)?;
            }
        }
        if id == me.user_id && (patch.role.is_some() || patch.active == Some(false)) {
            return Err(AppError::FailedPrecondition {
                reason: "SELF_LOCKOUT",
                subject: format!("{RESOURCE_TYPE}/{id}"),
                description: "you cannot change your own role or deactivate yourself".into(),
            });
        }
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut user = store::get_user_for_update(tx.conn(), tenant, id)
            .await?
            .ok_or_else(|| user_not_found(id))?;
        if etag.is_some_and(|e| e != user.etag()) {
            return Err(AppError::EtagMismatch {
                resource_type: RESOURCE_TYPE,
                name: id.to_string(),
            });
        }
        if user.kind == UserKind::ServiceAccount {
            let mut v = Vec::new();
            if patch.role.is_some() {
                v.push(FieldViolation::new(
                    "user.role",
                    "NOT_APPLICABLE",
                    "service accounts have no role",
                ));
            }
            if patch.email.is_some() {
                v.push(FieldViolation::new(
                    "user.email",
                    "NOT_APPLICABLE",
                    "service accounts have no e-mail",
                ));
            }
            if !v.is_empty() {
                return Err(AppError::InvalidArgument(v));
            }
        }
        if patch.apply(&mut user, now()) && !store::update_user(tx.conn(), tenant, &user).await? {
            return Err(email_taken(&user.email));
        }
        tx.commit().await?;
        self.directory.invalidate_user(tenant, id).await;
        Ok(user)
    }

    /// DeactivateUser / ReactivateUser.
    pub async fn set_active(&self, ctx: &Ctx, id: UserId, etag: Option<&str>, active: bool) -> Result<User, AppError> {
        let patch = UserPatch {
            active: Some(active),
            ..UserPatch::default()
        };
        self.update(ctx, id, etag, &patch).await
    }

    /// GetCurrentUser.
    /// GetCurrentUser: answered from the principal cache (no database once
    /// it is warm); the status feeds `x-cache`.
    pub async fn current(&self, ctx: &Ctx) -> Result<(CurrentUser, CacheStatus), AppError> {
        let p = &ctx.principal;
        let (user, status) = self
            .directory
            .user_with_status(p.tenant_id, p.user_id, ctx.deadline)
            .await?;
        let user = user.ok_or_else(|| user_not_found(p.user_id))?;
        Ok((
            CurrentUser {
                user,
                principal: p.clone(),
            },
            status,
        ))
    }

    /// CreateApiKey: returns the key's metadata and, this once, the key.
    pub async fn create_api_key(&self, ctx: &Ctx, new: NewApiKey) -> Result<(ApiKey, SecretString), AppError> {
        let now = now();
        if new.expire_time.is_some_and(|t| t <= now) {
            return Err(AppError::invalid(
                "api_key.expire_time",
                "IN_THE_PAST",
                "the expiry must be in the future",
            ));
        }
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let service_account_id = match new.service_account_id {
            Some(id) => {
                let sa = store::get_user(tx.conn(), tenant, id).await?;
                match sa {
                    Some(u) if u.kind == UserKind::ServiceAccount => id,
                    Some(_) => {
                        return Err(AppError::invalid(
                            "api_key.service_account_id",
                            "NOT_A_SERVICE_ACCOUNT",
                            "API keys belong to service accounts, not people",
                        ));
                    }
                    None => {
                        return Err(AppError::invalid(
                            "api_key.service_account_id",
                            "SERVICE_ACCOUNT_NOT_FOUND",
                            "no service account with this id exists in the tenant",
                        ));
                    }
                }
            }
            None => {
                let sa = User::service_account(UserId(Uuid::now_v7()), new.display_name.clone(), now);
                store::insert_user(tx.conn(), tenant, &sa).await?;
                sa.id
            }
        };
        let key = ApiKey {
            id: Uuid::now_v7(),
            display_name: new.display_name,
            service_account_id,
            scopes: new.scopes,
            create_time: now,
            expire_time: new.expire_time,
            last_use_time: None,
            revoke_time: None,
        };
        let issued = self.hasher.issue(tenant, key.id);
        store::insert_api_key(tx.conn(), tenant, &key, &issued.digest).await?;
        tx.commit().await?;
        Ok((key, issued.key))
    }

    /// ListApiKeys, newest first.
    pub async fn list_api_keys(
        &self,
        ctx: &Ctx,
        show_revoked: bool,
        size: u32,
        token: &str,
    ) -> Result<Page<ApiKey>, AppError> {
        let fp = fingerprint(&[
            &ctx.principal.tenant_id.to_string(),
            "api_keys",
            if show_revoked { "all" } else { "valid" },
        ]);
        let after = (!token.is_empty())
            .then(|| self.tokens.decode(&fp, token))
            .transpose()?;
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut items = store::list_api_keys(tx.conn(), tenant, show_revoked, after, i64::from(size) + 1).await?;
        tx.finish_read();
        let next_page_token = self.next_token(&fp, &mut items, size, |k| (micros(k.create_time), k.id));
        Ok(Page { items, next_page_token })
    }

    /// RevokeApiKey: the next request with the key is refused.
    pub async fn revoke_api_key(&self, ctx: &Ctx, id: Uuid) -> Result<ApiKey, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let key = store::revoke_api_key(tx.conn(), tenant, id, now())
            .await?
            .ok_or_else(|| key_not_found(id))?;
        tx.commit().await?;
        self.directory.invalidate_key(tenant, id).await;
        Ok(key)
    }
}
