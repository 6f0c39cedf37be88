//! The scenarios: what one request of each looks like, sent through the
//! generated Rust client (`deskd-client`) without retries, so every non-OK
//! status is counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use deskd_client::{
    DeskdClient, StatsClient, TicketsClient, UsersClient, code_name,
    proto::{
        stats::v1 as stats_pb,
        tickets::v1::{self as pb},
        users::v1 as users_pb,
    },
};
use uuid::Uuid;

use crate::seed::Seeded;

/// The description of every created ticket (pgbench's insert uses it too).
pub const CREATE_DESCRIPTION: &str = "Customer reports: the invoice for last month shows the wrong VAT rate for \
    the German branch. Steps: open Billing, choose Invoices, open the latest one. Expected 19 percent; got 16 \
    percent. Two other invoices of the same customer look fine. Please correct it and send a new invoice to the \
    billing contact.";

/// The time every call may take (a deadline: a call that hangs counts as
/// DEADLINE_EXCEEDED).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    GetTicket,
    ListTickets,
    CreateTicket,
    UpdateTicket,
    GetCurrentUser,
    StatsCached,
    StatsUncached,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::GetTicket,
        Scenario::ListTickets,
        Scenario::CreateTicket,
        Scenario::UpdateTicket,
        Scenario::GetCurrentUser,
        Scenario::StatsCached,
        Scenario::StatsUncached,
        Scenario::Mixed,
    ];

    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::GetTicket => "GetTicket",
            Scenario::ListTickets => "ListTickets",
            Scenario::CreateTicket => "CreateTicket",
            Scenario::UpdateTicket => "UpdateTicket",
            Scenario::GetCurrentUser => "GetCurrentUser",
            Scenario::StatsCached => "GetTicketStats.cached",
            Scenario::StatsUncached => "GetTicketStats.uncached",
            Scenario::Mixed => "mixed",
        }
    }

    /// The short name for `--scenarios`.
    pub fn short(self) -> &'static str {
        match self {
            Scenario::GetTicket => "get",
            Scenario::ListTickets => "list",
            Scenario::CreateTicket => "create",
            Scenario::UpdateTicket => "update",
            Scenario::GetCurrentUser => "me",
            Scenario::StatsCached => "stats-cached",
            Scenario::StatsUncached => "stats-uncached",
            Scenario::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.short().eq_ignore_ascii_case(s) || sc.name().eq_ignore_ascii_case(s))
    }
}

/// SplitMix64: a small, fast generator per worker (no shared state).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 1..=n.
    pub fn one_to(&mut self, n: u32) -> u32 {
        1 + (self.next_u64() % u64::from(n.max(1))) as u32
    }
}

/// State shared by the workers of one run.
pub struct Shared {
    pub seeded: Arc<Seeded>,
    /// The end of the cached stats window (fixed for the whole benchmark).
    pub stats_end_micros: i64,
    /// Counts down: each uncached stats call ends its window one
    /// microsecond earlier than any before it.
    pub stats_offset: AtomicI64,
}

/// One in-flight request loop's handles.
pub struct Worker {
    scenario: Scenario,
    tenant: u32,
    tickets: TicketsClient,
    users: UsersClient,
    stats: StatsClient,
    shared: Arc<Shared>,
    rng: Rng,
    edits: u64,
}

/// An error's code name, or a scenario-specific failure.
pub type Outcome = Result<(), &'static str>;

fn ts(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

impl Worker {
    pub fn new(scenario: Scenario, tenant: u32, client: &DeskdClient, shared: Arc<Shared>, seed: u64) -> Worker {
        Worker {
            scenario,
            tenant,
            tickets: client.tickets(),
            users: client.users(),
            stats: client.stats(),
            shared,
            rng: Rng::new(seed),
            edits: 0,
        }
    }

    /// Sends one request of the scenario.
    pub async fn call(&mut self) -> Outcome {
        let op = match self.scenario {
            Scenario::Mixed => match self.rng.next_u64() % 100 {
                // 70 % reads, 30 % writes.
                0..40 => Scenario::GetTicket,
                40..55 => Scenario::ListTickets,
                55..70 => Scenario::GetCurrentUser,
                70..85 => Scenario::CreateTicket,
                _ => Scenario::UpdateTicket,
            },
            s => s,
        };
        let code = |e: deskd_client::DeskdError| code_name(e.code());
        match op {
            Scenario::GetTicket => {
                let id = self.random_ticket();
                self.tickets
                    .get_ticket(pb::GetTicketRequest { id })
                    .await
                    .map(drop)
                    .map_err(code)
            }
            Scenario::ListTickets => self
                .tickets
                .list_tickets(pb::ListTicketsRequest {
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .map(drop)
                .map_err(code),
            Scenario::CreateTicket => {
                let n = self.rng.next_u64() % 10_000;
                let ticket = pb::Ticket {
                    title: format!("Invoice shows the wrong VAT rate (load {n})"),
                    description: CREATE_DESCRIPTION.into(),
                    priority: pb::TicketPriority::Normal as i32,
                    ..Default::default()
                };
                self.tickets
                    .create_ticket(pb::CreateTicketRequest {
                        ticket: Some(ticket),
                        request_id: Uuid::now_v7().to_string(),
                    })
                    .await
                    .map(drop)
                    .map_err(code)
            }
            Scenario::UpdateTicket => {
                self.edits += 1;
                let id = self.random_ticket();
                let ticket = pb::Ticket {
                    id,
                    title: format!("Export to CSV never finishes (edit {})", self.edits),
                    ..Default::default()
                };
                self.tickets
                    .update_ticket(pb::UpdateTicketRequest {
                        ticket: Some(ticket),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["title".into()],
                        }),
                    })
                    .await
                    .map(drop)
                    .map_err(code)
            }
            Scenario::GetCurrentUser => self
                .users
                .get_current_user(users_pb::GetCurrentUserRequest {})
                .await
                .map(drop)
                .map_err(code),
            Scenario::StatsCached => self.stats(0).await,
            Scenario::StatsUncached => {
                let offset = self.shared.stats_offset.fetch_add(1, Ordering::Relaxed) + 1;
                self.stats(offset).await
            }
            Scenario::Mixed => Err("MIXED_IN_MIXED"),
        }
    }

    fn random_ticket(&mut self) -> String {
        let n = self.rng.one_to(self.shared.seeded.tickets);
        self.shared.seeded.ticket_id(self.tenant, n)
    }

    /// A 30-day window ending `offset` µs before the fixed end; with the
    /// raw client, whose response metadata says whether the cache answered.
    async fn stats(&mut self, offset: i64) -> Outcome {
        let end = self.shared.stats_end_micros - offset;
        let mut req = tonic::Request::new(stats_pb::GetTicketStatsRequest {
            start_time: Some(ts(end - 30 * 86_400 * 1_000_000)),
            end_time: Some(ts(end)),
            top_assignees_limit: 10,
            ..Default::default()
        });
        req.set_timeout(CALL_TIMEOUT);
        match self.stats.raw().get_ticket_stats(req).await {
            Ok(resp) => {
                let hit = resp.metadata().get("x-cache").is_some_and(|v| v == "hit");
                if offset != 0 && hit {
                    // A distinct window can never be in the cache.
                    Err("UNEXPECTED_CACHE_HIT")
                } else {
                    Ok(())
                }
            }
            Err(status) => Err(code_name(status.code())),
        }
    }
}
