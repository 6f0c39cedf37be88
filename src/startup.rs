//! Builds and runs the server: database checks, the layer stack, health,
//! reflection, the in-process job worker, and graceful shutdown.

mod background;
pub mod handshake;
pub mod jobs;
mod linger;
mod secret;
mod transport;

use self::background::{health_loop, key_usage_loop, probe, tokio_util_like};
pub use self::{
    background::shutdown_signal,
    secret::{ServerSecret, server_secret},
};

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

use crate::{
    auth::{JwtKeys, apikey::KeyHasher, jwt},
    cache::{self, InvalidationRegistry},
    config::Config,
    db,
    kv::Redis,
    middleware::{
        MiddlewareLayer,
        authn::AuthnLayer,
        authorize::AuthorizeLayer,
        catch_panic::CatchPanicLayer,
        deadline::DeadlineLayer,
        load_shed::LoadShedLayer,
        rate_limit::RateLimitLayer,
        request_id::RequestIdLayer,
        request_log::RequestLogLayer,
        tenant::{TenantLayer, in_flight::TenantInFlight},
    },
    pagination::PageTokens,
    ratelimit::{InProcessRateLimiter, RateLimiter, RedisRateLimiter},
    tenancy::{TenantDirectory, directory::DirectoryConfig, key_usage::KeyUsage},
    tickets::{grpc::TicketsGrpc, service::TicketsService},
    users::{grpc::UsersGrpc, service::UsersService},
};

/// The gRPC services deskd serves (health reports each by name).
pub const SERVICE_NAMES: &[&str] = &[
    "deskd.tickets.v1.TicketsService",
    "deskd.users.v1.UsersService",
    "deskd.stats.v1.StatsService",
    "deskd.operations.v1.OperationsService",
];

/// A built server, bound to its address and ready to run.
pub struct Application {
    config: Config,
    listener: TcpListener,
    addr: SocketAddr,
    pool: PgPool,
    keys: Arc<JwtKeys>,
    page_tokens: PageTokens,
    hasher: KeyHasher,
    limiter: Arc<dyn RateLimiter>,
    redis: Option<Arc<Redis>>,
    /// The job handlers, when this server also runs a worker (`jobs.run_in_serve`).
    job_registry: Option<Arc<crate::jobs::worker::Registry>>,
    admin: crate::admin::AdminServer,
}

impl Application {
    /// Migrates (when an owner URL is configured), connects, checks the
    /// serving role, loads keys and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if !config.database.owner_url.expose_secret().is_empty() {
            db::migrate(&config.database).await.context("migrating the database")?;
        }
        let pool = db::app_pool(&config.database)?;
        db::check_app_role(&pool).await?;

        let (secret, source) = jwt::load_secret(&config.jwt).context("loading the JWT secret")?;
        let hs_secret = jwt::verification_secret(&config.jwt, &secret, &source);
        let keys = Arc::new(JwtKeys::from_config(&config.jwt, hs_secret).context("building the JWT keys")?);
        let server = server_secret(&config).context("loading the server secret")?;
        if server.from_dev_file {
            tracing::warn!(
                "no DESKD_SECRET_KEY or DESKD_JWT_SECRET configured: page tokens and API key digests use the \
                 development secret file, which other replicas do not share; set DESKD_SECRET_KEY in production"
            );
        }
        let hasher = KeyHasher::from_pepper_or(&config.api_keys.pepper, &server.secret);
        let redis = Redis::from_config(&config.redis)?;
        if redis.is_none() {
            tracing::info!("no DESKD_REDIS_URL: rate limits and caches are this replica's own");
        }
        let job_registry = if config.jobs.run_in_serve {
            Some(Arc::new(jobs::registry(&config)?))
        } else {
            None
        };
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("binding {}", config.listen_addr))?;
        let addr = listener.local_addr()?;
        let admin = crate::admin::AdminServer::bind(config.admin_addr).await?;
        Ok(Self {
            config,
            listener,
            addr,
            pool,
            keys,
            page_tokens: PageTokens::new(server.secret.expose_secret().as_bytes()),
            hasher,
            limiter: match &redis {
                Some(r) => Arc::new(RedisRateLimiter::new(r.clone())),
                None => Arc::new(InProcessRateLimiter::default()),
            },
            redis,
            job_registry,
            admin,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's bound address (useful with port 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The serving pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` completes, then drains in-flight RPCs for at
    /// most `server.shutdown_grace`.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            config,
            listener,
            addr,
            pool,
            keys,
            page_tokens,
            hasher,
            limiter,
            redis,
            job_registry,
            admin,
        } = self;
        let cfg = Arc::new(config);
        let s = &cfg.server;

        let (health, health_service) = tonic_health::server::health_reporter();
        // Register every service's status before the first RPC can arrive,
        // so a probe never sees NOT_FOUND for a service deskd serves.
        let initially_ok = probe(&pool, cfg.health.check_timeout).await;
        let readiness = crate::admin::Readiness::default();
        readiness.set(initially_ok);
        let _pool_gauges = crate::telemetry::metrics::register_pool(&pool, cfg.database.max_connections);
        let stop_admin = tokio_util_like::Stop::default();
        let admin_task = tokio::spawn(admin.serve(readiness.clone(), {
            let stop = stop_admin.clone();
            async move { stop.stopped().await }
        }));
        let initial = if initially_ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in SERVICE_NAMES.iter().chain(std::iter::once(&"")) {
            health.set_service_status(*name, initial).await;
        }
        let stop_health = tokio_util_like::Stop::default();
        let health_task = tokio::spawn(health_loop(
            initially_ok,
            pool.clone(),
            health.clone(),
            readiness.clone(),
            cfg.health.check_interval,
            cfg.health.check_timeout,
            stop_health.clone(),
        ));
        // The job worker stops taking jobs when shutdown begins, and lets
        // running ones finish within the same grace as in-flight RPCs.
        let stop_jobs = tokio_util_like::Stop::default();
        let jobs_task = job_registry.map(|registry| {
            let stop = stop_jobs.clone();
            tokio::spawn(crate::jobs::worker::run(
                pool.clone(),
                registry,
                jobs::worker_config(&cfg),
                async move { stop.stopped().await },
            ))
        });
        let stop_keys = tokio_util_like::Stop::default();
        let keys_task = tokio::spawn(jwt::watch_jwks(keys.clone(), cfg.jwt.reload_interval, {
            let stop = stop_keys.clone();
            async move { stop.stopped().await }
        }));

        let reflection_v1 = transport::reflection().build_v1()?;
        let reflection_v1alpha = transport::reflection().build_v1alpha()?;

        let key_usage = Arc::new(KeyUsage::default());
        let directory = TenantDirectory::new(
            pool.clone(),
            DirectoryConfig {
                tenant_ttl: cfg.tenant_cache.ttl,
                principal_ttl: cfg.tenant_cache.principal_ttl,
                capacity: cfg.tenant_cache.capacity,
                statement_cap: cfg.database.statement_timeout,
                local_ttl: if redis.is_some() {
                    cfg.cache.local_ttl
                } else {
                    // Without Redis there is no second tier: keep the full TTL here.
                    cfg.tenant_cache.principal_ttl.max(cfg.tenant_cache.ttl)
                },
            },
            hasher.clone(),
            key_usage.clone(),
            redis.clone(),
        );
        let mut registry = InvalidationRegistry::default();
        directory.register(&mut registry);
        let registry = Arc::new(registry);
        let (subscribed_tx, _subscribed_rx) = tokio::sync::watch::channel(false);
        let invalidation_task = redis.clone().map(|r| {
            let stop = stop_health.clone();
            tokio::spawn(cache::listen(
                r,
                registry.clone(),
                async move { stop.stopped().await },
                subscribed_tx,
            ))
        });
        let usage_task = tokio::spawn(key_usage_loop(
            key_usage.clone(),
            pool.clone(),
            cfg.api_keys.last_use_flush_interval,
            cfg.database.statement_timeout,
            stop_health.clone(),
        ));
        let users = UsersGrpc::new(UsersService::new(
            pool.clone(),
            page_tokens.clone(),
            cfg.database.statement_timeout,
            directory.clone(),
            hasher,
        ))
        .into_server(s);
        let stats_cache = cache::TwoTier::new(
            "stats",
            10_000,
            if redis.is_some() {
                cfg.cache.stats_ttl.min(cfg.cache.local_ttl)
            } else {
                cfg.cache.stats_ttl
            },
            cfg.cache.stats_ttl,
            redis.clone(),
        );
        let stats = crate::stats::grpc::StatsGrpc::new(crate::stats::service::StatsService::new(
            pool.clone(),
            cfg.database.statement_timeout,
            stats_cache,
        ))
        .into_server(s);
        let operations =
            crate::operations::grpc::OperationsGrpc::new(crate::operations::service::OperationsService::new(
                pool.clone(),
                page_tokens.clone(),
                cfg.database.statement_timeout,
            ))
            .into_server(s);
        let tickets = TicketsGrpc::new(TicketsService::new(
            pool.clone(),
            page_tokens,
            cfg.database.statement_timeout,
        ))
        .into_server(s);

        // Outermost first; see middleware.rs for why each sits where it does.
        let layers = ServiceBuilder::new()
            .layer(MiddlewareLayer(RequestIdLayer))
            .layer(MiddlewareLayer(RequestLogLayer {
                slow_threshold: s.slow_rpc_threshold,
            }))
            .layer(MiddlewareLayer(CatchPanicLayer))
            .layer(MiddlewareLayer(LoadShedLayer::new(s.max_in_flight)))
            .layer(MiddlewareLayer(DeadlineLayer {
                max: s.max_request_duration,
            }))
            .layer(MiddlewareLayer(AuthnLayer { keys }))
            .layer(MiddlewareLayer(TenantLayer {
                directory,
                in_flight: TenantInFlight::new(s.max_in_flight_per_tenant),
            }))
            .layer(MiddlewareLayer(RateLimitLayer {
                limiter,
                config: Arc::new(cfg.rate_limit.clone()),
            }))
            .layer(MiddlewareLayer(AuthorizeLayer));

        let router = transport::server(s)
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(tickets)
            .add_service(users)
            .add_service(stats)
            .add_service(operations);

        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let health_on_stop = health.clone();
        let stop_jobs_on_signal = stop_jobs.clone();
        let readiness_on_stop = readiness.clone();
        let drain_delay = s.drain_delay;
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight RPCs and running jobs");
            readiness_on_stop.stopping();
            stop_jobs_on_signal.stop();
            // Tell load balancers first, then stop accepting.
            for name in SERVICE_NAMES.iter().chain(std::iter::once(&"")) {
                health_on_stop
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            // Keep serving while balancers notice; only then GOAWAY and close.
            if !drain_delay.is_zero() {
                tracing::info!(
                    drain_ms = drain_delay.as_millis() as u64,
                    "not ready: serving on until balancers notice"
                );
                tokio::time::sleep(drain_delay).await;
            }
            let _ = stopping_tx.send(true);
        };
        tracing::info!(%addr, "deskd serving gRPC");
        // The builder's tcp_nodelay/keepalive do not apply to a caller-supplied
        // listener: set them on the incoming stream, or Nagle delays every
        // response larger than a segment by the peer's delayed ACK (~40 ms).
        let (lingering, lingering_done) = linger::tracker();
        let handshake_timeout = s.handshake_timeout;
        let incoming = tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(s.keepalive_interval))
            // Each accepted connection must send the HTTP/2 preface within
            // handshake_timeout (handshake.rs) and closes lingeringly (linger.rs).
            .map(move |accepted| {
                accepted.map(|stream| handshake::PrefaceDeadline::new(lingering.wrap(stream), handshake_timeout))
            });
        let serve = router.serve_with_incoming_shutdown(incoming, signal);
        let grace = s.shutdown_grace;
        let mut stopping = stopping_rx;
        let deadline = async move {
            let _ = stopping.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = serve => r.map_err(anyhow::Error::from),
            () = deadline => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "shutdown grace period over: closing remaining RPCs");
                Ok(())
            }
        };
        // The last connections' sockets close once their peers have read
        // everything (see linger.rs).
        lingering_done.wait().await;
        stop_jobs.stop();
        if let Some(t) = jobs_task {
            let _ = t.await;
        }
        stop_health.stop();
        let _ = health_task.await;
        stop_keys.stop();
        let _ = keys_task.await;
        // The usage loop writes what is pending once more as it stops.
        let _ = usage_task.await;
        if let Some(t) = invalidation_task {
            let _ = t.await;
        }
        pool.close().await;
        stop_admin.stop();
        let _ = admin_task.await;
        tracing::info!("deskd stopped");
        result
    }
}
