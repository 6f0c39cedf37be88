//! The `deskd` command line: parses arguments, sets up logging, loads the
//! configuration and runs one command.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use deskd::{
    config::Config,
    ops,
    startup::{Application, shutdown_signal},
    tenancy::{TenantId, TenantStatus, UserId},
    users::model::Role,
};
use uuid::Uuid;

/// mimalloc: 13–17 % fewer instructions per RPC than glibc's malloc, whose
/// calls were the largest item of a GetTicket's profile (BENCHMARKS.md,
/// "Session 5" and "Session 6"). Built with `no_thp`: transparent huge pages
/// on its arenas doubled the idle memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// deskd — a multi-tenant helpdesk backend (Tickets, Users, Stats) over gRPC.
///
/// Configuration: built-in defaults, then the TOML file given by --config
/// (or DESKD_CONFIG), then DESKD_* environment variables, e.g.
/// DESKD_LISTEN_ADDR, DESKD_DATABASE_URL, DESKD_DATABASE_OWNER_URL,
/// DESKD_JWT_SECRET, DESKD_JWT_ISSUER, DESKD_JWT_AUDIENCE.
#[derive(Parser)]
#[command(name = "deskd", version, propagate_version = true)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "DESKD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate (when DESKD_DATABASE_OWNER_URL is set), then serve gRPC until SIGTERM/SIGINT.
    Serve,
    /// Run background jobs only (welcome e-mails) until SIGTERM/SIGINT.
    ///
    /// Connects with DESKD_DATABASE_URL (the app role, checked like `serve`; no migrations)
    /// and sends mail through the [smtp] relay (DESKD_SMTP_*). On SIGTERM/SIGINT it stops
    /// claiming jobs and lets running ones finish within server.shutdown_grace; the rest go
    /// back to the queue. Run any number beside `deskd serve`; set DESKD_JOBS_RUN_IN_SERVE=false
    /// to keep jobs out of the serving processes.
    Worker,
    /// Apply database migrations and create/update the app role (needs the owner URL).
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Mint credentials.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Issue API keys for services.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Inspect and retry background jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Print jobs as JSON lines (newest first): id, tenant, kind, state, attempts, last error, times.
    List {
        /// Only this tenant's jobs.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Only jobs in this state: queued, running, succeeded or dead.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Put a dead job back in the queue with a fresh attempt budget.
    Retry {
        /// The job's tenant.
        #[arg(long)]
        tenant: Uuid,
        /// The job id.
        id: Uuid,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create a service account with an API key and print the key (shown only once).
    Create {
        /// The tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// What the key is for; also the service account's name.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: tickets:read, tickets:write, users:read, users:write, stats:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Expire the key after this long, e.g. 90d; never when omitted.
        #[arg(long, value_parser = humantime_duration)]
        ttl: Option<Duration>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its id.
    Create {
        /// The tenant's display name.
        name: String,
    },
    /// Suspend a tenant: every request for it is refused with PERMISSION_DENIED.
    Suspend {
        /// The tenant id.
        id: Uuid,
    },
    /// Reactivate a suspended tenant (alias: resume).
    #[command(alias = "resume")]
    Activate {
        /// The tenant id.
        id: Uuid,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print its id.
    Create {
        /// The tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// The user's e-mail (unique within the tenant).
        #[arg(long)]
        email: String,
        /// admin, agent or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The name shown in front ends.
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint an HS256 JWT for a user and print it.
    Mint {
        /// The tenant id.
        #[arg(long)]
        tenant: Uuid,
        /// The user id.
        #[arg(long)]
        user: Uuid,
        /// How long the token is valid, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime_duration)]
        ttl: Duration,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(s).map_err(|e| e.to_string())
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Jobs(JobsCommand::List { tenant, state, limit }) => {
            for line in ops::list_jobs(&config, tenant.map(TenantId), state.as_deref(), limit).await? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Jobs(JobsCommand::Retry { tenant, id }) => ops::retry_job(&config, TenantId(tenant), id).await,
        Command::Worker => deskd::startup::jobs::run_worker(config, shutdown_signal()).await,
        Command::Migrate => {
            deskd::db::migrate(&config.database).await?;
            eprintln!("migrations applied; app role ready");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { name }) => {
            println!("{}", ops::create_tenant(&config, &name).await?);
            Ok(())
        }
        Command::Tenant(TenantCommand::Suspend { id }) => {
            ops::set_tenant_status(&config, TenantId(id), TenantStatus::Suspended).await
        }
        Command::Tenant(TenantCommand::Activate { id }) => {
            ops::set_tenant_status(&config, TenantId(id), TenantStatus::Active).await
        }
        Command::User(UserCommand::Create {
            tenant,
            email,
            role,
            name,
        }) => {
            println!(
                "{}",
                ops::create_user(&config, TenantId(tenant), &email, &name, role).await?
            );
            Ok(())
        }
        Command::Apikey(ApikeyCommand::Create {
            tenant,
            name,
            scopes,
            ttl,
        }) => {
            println!(
                "{}",
                ops::create_api_key(&config, TenantId(tenant), &name, &scopes, ttl).await?
            );
            Ok(())
        }
        Command::Token(TokenCommand::Mint { tenant, user, ttl }) => {
            println!("{}", ops::mint_token(&config, TenantId(tenant), UserId(user), ttl)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_process_env(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deskd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("deskd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the OTLP exporters are tonic clients.
    let telemetry = {
        let _rt = runtime.enter();
        deskd::telemetry::init(&config)
    };
    let code = match runtime.block_on(run(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deskd: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Flush spans and metrics while the runtime still drives the exporters.
    {
        let _rt = runtime.enter();
        drop(telemetry);
    }
    code
}
