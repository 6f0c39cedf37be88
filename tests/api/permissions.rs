//! The permission table through the real server: every method of every deskd
//! service, called by every kind of caller (each role's JWT and API keys with
//! various scope sets), is allowed or refused exactly as the table, the role
//! grants and the key scopes say.

use std::collections::BTreeSet;

use deskd::{
    auth::{
        Permission, Permissions,
        permissions::{GRANTABLE_SCOPES, METHODS, Requirement, deskd_methods, requirement},
    },
    proto::{
        operations::v1::{
            CancelOperationRequest, GetOperationRequest, ListOperationsRequest,
            operations_service_client::OperationsServiceClient,
        },
        stats::v1::{GetTicketStatsRequest, stats_service_client::StatsServiceClient},
        tickets::v1::{
            self as tpb, CreateTicketRequest, DeleteTicketRequest, ExportTicketsRequest, GetTicketRequest,
            ListTicketsRequest, UpdateTicketRequest, tickets_service_client::TicketsServiceClient,
        },
        users::v1::{
            self as upb, CreateApiKeyRequest, CreateUserRequest, DeactivateUserRequest, GetCurrentUserRequest,
            GetUserRequest, ListApiKeysRequest, ListUsersRequest, ReactivateUserRequest, RevokeApiKeyRequest,
            UpdateUserRequest, users_service_client::UsersServiceClient,
        },
    },
    users::model::Role,
};
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

/// A caller of the matrix.
struct Subject {
    label: String,
    bearer: String,
    /// The caller's own user id (a service account for keys).
    self_id: String,
    permissions: Permissions,
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// Refused with PERMISSION_MISSING naming this permission.
    Denied(String),
}

const SCOPE_SETS: &[&[&str]] = &[
    &["tickets:read"],
    &["tickets:write"],
    &["tickets:read", "tickets:write"],
    &["users:read"],
    &["users:write"],
    &["stats:read"],
    &[
        "tickets:read",
        "tickets:write",
        "users:read",
        "users:write",
        "stats:read",
    ],
];

fn random_id() -> String {
    Uuid::now_v7().to_string()
}

/// Calls `path` as `s` with a syntactically valid request.
async fn call(channel: Channel, s: &Subject, path: &str) -> Result<(), Status> {
    let mut t = TicketsServiceClient::new(channel.clone());
    let mut u = UsersServiceClient::new(channel.clone());
    let mut op = OperationsServiceClient::new(channel.clone());
    let mut st = StatsServiceClient::new(channel);
    let b = s.bearer.as_str();
    match path {
        "/deskd.tickets.v1.TicketsService/GetTicket" => t
            .get_ticket(authed(b, GetTicketRequest { id: random_id() }))
            .await
            .map(drop),
        "/deskd.tickets.v1.TicketsService/ListTickets" => {
            t.list_tickets(authed(b, ListTicketsRequest::default())).await.map(drop)
        }
        "/deskd.tickets.v1.TicketsService/CreateTicket" => t
            .create_ticket(authed(
                b,
                CreateTicketRequest {
                    ticket: Some(new_ticket(&format!("matrix {}", s.label))),
                    request_id: String::new(),
                },
            ))
            .await
            .map(drop),
        "/deskd.tickets.v1.TicketsService/UpdateTicket" => t
            .update_ticket(authed(
                b,
                UpdateTicketRequest {
                    ticket: Some(tpb::Ticket {
                        id: random_id(),
                        ..new_ticket("renamed")
                    }),
                    update_mask: mask(&["title"]),
                },
            ))
            .await
            .map(drop),
        "/deskd.tickets.v1.TicketsService/DeleteTicket" => t
            .delete_ticket(authed(
                b,
                DeleteTicketRequest {
                    id: random_id(),
                    etag: String::new(),
                },
            ))
            .await
            .map(drop),
        "/deskd.tickets.v1.TicketsService/ExportTickets" => t
            .export_tickets(authed(
                b,
                ExportTicketsRequest {
                    format: tpb::ExportFormat::Jsonl as i32,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        "/deskd.operations.v1.OperationsService/GetOperation" => op
            .get_operation(authed(
                b,
                GetOperationRequest {
                    name: format!("operations/{}", random_id()),
                },
            ))
            .await
            .map(drop),
        "/deskd.operations.v1.OperationsService/ListOperations" => op
            .list_operations(authed(b, ListOperationsRequest::default()))
            .await
            .map(drop),
        "/deskd.operations.v1.OperationsService/CancelOperation" => op
            .cancel_operation(authed(
                b,
                CancelOperationRequest {
                    name: format!("operations/{}", random_id()),
                },
            ))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/GetUser" => u
            .get_user(authed(b, GetUserRequest { id: random_id() }))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/ListUsers" => {
            u.list_users(authed(b, ListUsersRequest::default())).await.map(drop)
        }
        "/deskd.users.v1.UsersService/CreateUser" => u
            .create_user(authed(
                b,
                CreateUserRequest {
                    user: Some(person(&unique_email("matrix"), "Matrix", upb::Role::Viewer)),
                    request_id: String::new(),
                },
            ))
            .await
            .map(drop),
        // Requirement::Authenticated: everyone may rename themselves.
        "/deskd.users.v1.UsersService/UpdateUser" => u
            .update_user(authed(
                b,
                UpdateUserRequest {
                    user: Some(upb::User {
                        id: s.self_id.clone(),
                        display_name: format!("renamed {}", s.label),
                        ..Default::default()
                    }),
                    update_mask: mask(&["display_name"]),
                },
            ))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/DeactivateUser" => u
            .deactivate_user(authed(
                b,
                DeactivateUserRequest {
                    id: random_id(),
                    etag: String::new(),
                },
            ))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/ReactivateUser" => u
            .reactivate_user(authed(
                b,
                ReactivateUserRequest {
                    id: random_id(),
                    etag: String::new(),
                },
            ))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/GetCurrentUser" => {
            u.get_current_user(authed(b, GetCurrentUserRequest {})).await.map(drop)
        }
        "/deskd.users.v1.UsersService/CreateApiKey" => u
            .create_api_key(authed(
                b,
                CreateApiKeyRequest {
                    api_key: Some(new_key("matrix", &["tickets:read"])),
                },
            ))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/ListApiKeys" => u
            .list_api_keys(authed(b, ListApiKeysRequest::default()))
            .await
            .map(drop),
        "/deskd.users.v1.UsersService/RevokeApiKey" => u
            .revoke_api_key(authed(b, RevokeApiKeyRequest { id: random_id() }))
            .await
            .map(drop),
        "/deskd.stats.v1.StatsService/GetTicketStats" => st
            .get_ticket_stats(authed(b, GetTicketStatsRequest::default()))
            .await
            .map(drop),
        other => panic!("no driver for {other}: add one to permissions::call"),
    }
}

/// Classifies an answer; anything but "allowed" or PERMISSION_MISSING is a bug.
fn verdict(label: &str, path: &str, res: Result<(), Status>) -> Result<Verdict, String> {
    match res {
        Ok(()) => Ok(Verdict::Allowed),
        Err(s)
            if matches!(
                s.code(),
                Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition
            ) =>
        {
            Ok(Verdict::Allowed)
        }
        Err(s) if s.code() == Code::PermissionDenied && reason(&s) == "PERMISSION_MISSING" => {
            let details = s.get_error_details();
            let permission = details
                .error_info()
                .and_then(|i| i.metadata.get("permission").cloned())
                .unwrap_or_default();
            Ok(Verdict::Denied(permission))
        }
        Err(s) => Err(format!(
            "{label} {path}: unexpected answer {:?} {} {s:?}",
            s.code(),
            reason(&s)
        )),
    }
}

/// What the table, role grants and scopes say.
fn expected(s: &Subject, path: &str) -> Verdict {
    match requirement(path) {
        Some(Requirement::Permission(p)) if s.permissions.contains(p) => Verdict::Allowed,
        Some(Requirement::Permission(p)) => Verdict::Denied(p.as_str().to_string()),
        Some(Requirement::Authenticated) => Verdict::Allowed,
        None => panic!("{path} has no entry in the permission table"),
    }
}

#[test]
fn the_table_covers_every_deskd_method_exactly_once() {
    let methods = deskd_methods();
    assert!(methods.len() >= 15, "{methods:?}");
    let table: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
    let unique: BTreeSet<String> = table.iter().map(|m| (*m).to_string()).collect();
    assert_eq!(unique.len(), table.len(), "duplicate entries in METHODS");
    assert_eq!(&unique, methods, "METHODS and the services' descriptors differ");
    for m in methods {
        assert!(requirement(m).is_some(), "{m} is ungoverned");
    }
    // Key management is not grantable; the grantable scopes are exactly the rest.
    assert!(!GRANTABLE_SCOPES.contains(&Permission::ApiKeysManage));
    for s in GRANTABLE_SCOPES {
        assert_eq!(Permission::parse_scope(s.as_str()), Some(*s));
    }
}

#[tokio::test]
async fn every_method_allows_and_refuses_exactly_as_the_table_says() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let mut subjects = Vec::new();
    for role in [Role::Admin, Role::Agent, Role::Viewer] {
        let c = if role == Role::Admin {
            admin.clone()
        } else {
            app.colleague(&admin, role).await
        };
        subjects.push(Subject {
            label: format!("{role:?} JWT"),
            bearer: c.token.clone(),
            self_id: c.user.to_string(),
            permissions: Permissions::for_role(role),
        });
    }
    for scopes in SCOPE_SETS {
        let created = create_key(&app, &admin.token, &format!("matrix {}", scopes.join("+")), scopes).await;
        let parsed: Vec<Permission> = scopes
            .iter()
            .map(|s| Permission::parse_scope(s).expect("grantable scope"))
            .collect();
        subjects.push(Subject {
            label: format!("key {{{}}}", scopes.join(",")),
            bearer: created.key.clone(),
            self_id: created.api_key.expect("api key").service_account_id,
            permissions: Permissions::of(&parsed),
        });
    }

    let mut failures = Vec::new();
    let mut allowed = 0;
    let mut denied = 0;
    for s in &subjects {
        let calls = METHODS.iter().map(|(path, _)| {
            let channel = app.channel.clone();
            async move { (*path, call(channel, s, path).await) }
        });
        for (path, res) in futures_util::future::join_all(calls).await {
            let want = expected(s, path);
            match verdict(&s.label, path, res) {
                Ok(got) if got == want => match got {
                    Verdict::Allowed => allowed += 1,
                    Verdict::Denied(_) => denied += 1,
                },
                Ok(got) => failures.push(format!("{} {path}: expected {want:?}, got {got:?}", s.label)),
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(allowed + denied, subjects.len() * METHODS.len());
    // The matrix is not vacuous: both outcomes occur.
    assert!(allowed > 0 && denied > 0, "allowed {allowed}, denied {denied}");
}
