//! PostgreSQL set-up: the app pool, migrations and the app role, and the
//! start-up check that the serving role is subject to row-level security.

use std::{str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseConfig;

/// Embedded migrations from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tables that hold tenant data; the app role needs DML on them and must own none.
pub const TENANT_TABLES: &[&str] = &[
    "tenants",
    "users",
    "tickets",
    "idempotency_keys",
    "api_keys",
    "ticket_stats_created_daily",
    "ticket_stats_resolved_daily",
    "jobs",
    "operations",
];

/// Database set-up failures, each saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// A URL that does not parse.
    #[error("{key} is not a valid PostgreSQL URL: {reason}")]
    BadUrl {
        /// The config key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The serving role bypasses RLS.
    #[error(
        "refusing to serve: database role `{role}` {why}. Row-level security would not confine it to one \
         tenant. Point DESKD_DATABASE_URL at the app role that `deskd migrate` creates \
         (a role with NOSUPERUSER NOBYPASSRLS that owns no table), and keep the owner role in \
         DESKD_DATABASE_OWNER_URL for migrations only."
    )]
    UnsafeRole {
        /// The role's name.
        role: String,
        /// What is wrong with it.
        why: String,
    },
    /// The schema is missing or behind.
    #[error(
        "the database schema is not migrated (missing table `{0}`): run `deskd migrate` with \
         DESKD_DATABASE_OWNER_URL set, or start `deskd serve` with it"
    )]
    NotMigrated(String),
    /// PostgreSQL said no.
    #[error("{context}: {source}")]
    Sql {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn sql(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbSetupError {
    let context = context.into();
    move |source| DbSetupError::Sql { context, source }
}

/// Parses a URL into connect options, with deskd's application name.
pub fn connect_options(key: &'static str, url: &SecretString) -> Result<PgConnectOptions, DbSetupError> {
    PgConnectOptions::from_str(url.expose_secret())
        .map(|o| {
            o.application_name("deskd")
                .log_statements(tracing::log::LevelFilter::Trace)
        })
        .map_err(|e| DbSetupError::BadUrl {
            key,
            reason: e.to_string(),
        })
}

/// The serving pool (app role), sized and timed from config.
pub fn app_pool(cfg: &DatabaseConfig) -> Result<PgPool, DbSetupError> {
    let opts = connect_options("database.url", &cfg.url)?;
    Ok(PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(cfg.min_connections)
        .idle_timeout(Some(cfg.idle_timeout))
        .acquire_timeout(cfg.acquire_timeout)
        // The health checker probes the pool; skipping the per-acquire ping
        // saves a round trip on every request.
        .test_before_acquire(false)
        .connect_lazy_with(opts))
}

/// A role or database name that is safe to interpolate as a quoted identifier.
fn checked_ident(kind: &str, name: &str) -> Result<String, DbSetupError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(DbSetupError::BadUrl {
            key: "database",
            reason: format!("{kind} name `{name}` must match [a-z_][a-z0-9_]*"),
        })
    }
}

/// Creates the owner URL's database when it is missing (connecting to the
/// `postgres` maintenance database with the same credentials).
async fn ensure_database(owner: &PgConnectOptions) -> Result<(), DbSetupError> {
    let name = owner.get_database().unwrap_or("postgres").to_string();
    let quoted = checked_ident("database", &name)?;
    let mut conn = owner.clone().database("postgres").connect().await.map_err(sql(
        "connecting to the maintenance database `postgres` with the owner URL",
    ))?;
    let exists: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .map_err(sql("looking up the database"))?;
    if !exists {
        let res = sqlx::query(AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut conn)
            .await;
        if let Err(e) = res {
            // A concurrent `create database` of the same name is fine.
            let dup =
                matches!(&e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("42P04") | Some("23505")));
            if !dup {
                return Err(sql(format!("creating database {name}"))(e));
            }
        }
        tracing::info!(database = %name, "created database");
    }
    let _ = conn.close().await;
    Ok(())
}

/// Applies migrations as the owner and creates/updates the app role named by
/// the app URL (its password too, when the URL has one), granting it DML on
/// the tenant tables and nothing else.
pub async fn migrate(cfg: &DatabaseConfig) -> Result<(), DbSetupError> {
    let owner = connect_options("database.owner_url", &cfg.owner_url)?;
    ensure_database(&owner).await?;
    let mut conn = owner
        .connect()
        .await
        .map_err(sql("connecting with the owner URL (DESKD_DATABASE_OWNER_URL)"))?;
    MIGRATOR.run(&mut conn).await?;

    let app = url::Url::parse(cfg.url.expose_secret()).map_err(|e| DbSetupError::BadUrl {
        key: "database.url",
        reason: e.to_string(),
    })?;
    let role_name = app.username().to_string();
    let role = checked_ident("role", &role_name)?;
    let password = app
        .password()
        .map(|p| {
            url::form_urlencoded::parse(format!("p={p}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .filter(|p| !p.is_empty());
    let owner_role: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut conn)
        .await
        .map_err(sql("reading the owner role"))?;
    if owner_role == role_name {
        return Err(DbSetupError::UnsafeRole {
            role: role_name,
            why: "is the owner role of the migrations".into(),
        });
    }

    // Roles are cluster-wide and several deskd databases (tests, staging)
    // may migrate at once: create-if-missing tolerates the race, and the
    // attribute fix-up retries on "tuple concurrently updated".
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = provision_role(&mut conn, &role_name, &role, password.as_deref()).await;
        match res {
            Ok(()) => break,
            Err(e) if attempt < 5 => {
                tracing::debug!(error = %e, attempt, "retrying app role provisioning");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(sql(format!("provisioning app role {role_name}"))(e)),
        }
    }

    let db = owner.get_database().unwrap_or("postgres").to_string();
    let db_quoted = checked_ident("database", &db)?;
    let mut grants = vec![
        format!("grant connect on database {db_quoted} to {role}"),
        format!("grant usage on schema public to {role}"),
        format!("revoke all on all tables in schema public from {role}"),
        format!("grant select on tenants to {role}"),
    ];
    for table in TENANT_TABLES.iter().filter(|t| **t != "tenants") {
        grants.push(format!("grant select, insert, update, delete on {table} to {role}"));
    }
    // The one cross-tenant operation, a SECURITY DEFINER function (see the
    // jobs migration for why).
    grants.push(format!(
        "grant execute on function claim_jobs(text, integer, integer, text[]) to {role}"
    ));
    grants.push(format!("grant execute on function job_queue_depth() to {role}"));
    for stmt in grants {
        sqlx::query(AssertSqlSafe(stmt.clone()))
            .execute(&mut conn)
            .await
            .map_err(sql(format!("granting privileges: {stmt}")))?;
    }
    let _ = conn.close().await;
    Ok(())
}

async fn provision_role(
    conn: &mut PgConnection,
    name: &str,
    quoted: &str,
    password: Option<&str>,
) -> Result<(), sqlx::Error> {
    let current: Option<(bool, bool, bool)> =
        sqlx::query_as("select rolsuper, rolbypassrls, rolcanlogin from pg_roles where rolname = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    match current {
        None => {
            let res = sqlx::query(AssertSqlSafe(format!(
                "create role {quoted} login nosuperuser nobypassrls nocreatedb nocreaterole noinherit"
            )))
            .execute(&mut *conn)
            .await;
            if let Err(e) = res {
                let dup = matches!(&e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("42710") | Some("23505")));
                if !dup {
                    return Err(e);
                }
            }
        }
        Some((false, false, true)) => {}
        Some(_) => {
            sqlx::query(AssertSqlSafe(format!(
                "alter role {quoted} login nosuperuser nobypassrls"
            )))
            .execute(&mut *conn)
            .await?;
        }
    }
    if let Some(pw) = password {
        // ALTER ROLE takes no bind parameters; build a safe literal with
        // PostgreSQL's own quote_literal.
        let literal: String = sqlx::query_scalar("select quote_literal($1)")
            .bind(pw)
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query(AssertSqlSafe(format!("alter role {quoted} password {literal}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Refuses a serving role that row-level security would not confine: a
/// superuser, a BYPASSRLS role, or one that owns (or inherits the owner of)
/// a tenant table. Also checks the schema is migrated.
pub async fn check_app_role(pool: &PgPool) -> Result<(), DbSetupError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(sql("connecting with DESKD_DATABASE_URL"))?;
    let (role, is_super, bypass): (String, bool, bool) =
        sqlx::query_as("select rolname::text, rolsuper, rolbypassrls from pg_roles where rolname = current_user")
            .fetch_one(&mut *conn)
            .await
            .map_err(sql("reading the serving role"))?;
    if is_super {
        return Err(DbSetupError::UnsafeRole {
            role,
            why: "is a superuser".into(),
        });
    }
    if bypass {
        return Err(DbSetupError::UnsafeRole {
            role,
            why: "has BYPASSRLS".into(),
        });
    }
    for table in TENANT_TABLES {
        let owner: Option<(String, bool, bool)> = sqlx::query_as(
            "select t.tableowner::text, t.tableowner = current_user, pg_has_role(current_user, t.tableowner, 'USAGE') \
             from pg_tables t where t.schemaname = current_schema() and t.tablename = $1",
        )
        .bind(table)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("reading table owners"))?;
        match owner {
            None => return Err(DbSetupError::NotMigrated((*table).to_string())),
            Some((owner, true, _)) | Some((owner, _, true)) => {
                return Err(DbSetupError::UnsafeRole {
                    role,
                    why: format!("owns (or is a member of `{owner}`, the owner of) table `{table}`"),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}
