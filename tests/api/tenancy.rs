//! Tenant isolation through the API: another tenant's ids answer exactly
//! like ids that do not exist and change nothing; lists never cross tenants;
//! a ticket can never point at another tenant's user; `x-tenant-id` may only
//! confirm the credential's tenant; unknown and suspended tenants are refused.

use std::collections::{BTreeMap, BTreeSet};

use deskd::{
    auth::Claims,
    proto::tickets::v1 as pb,
    tenancy::{TenantId, UserId},
    users::model::Role,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetail, StatusExt as _};
use uuid::Uuid;

use crate::helpers::*;

const TICKET_TYPE: &str = "deskd.tickets.v1.Ticket";

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn get(app: &TestApp, caller: &Caller, id: &str) -> Result<pb::Ticket, Status> {
    app.tickets()
        .get_ticket(authed(&caller.token, pb::GetTicketRequest { id: id.into() }))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in response"))
}

async fn update_title(app: &TestApp, caller: &Caller, id: &str, etag: &str) -> Result<pb::Ticket, Status> {
    app.tickets()
        .update_ticket(authed(
            &caller.token,
            pb::UpdateTicketRequest {
                ticket: Some(pb::Ticket {
                    id: id.into(),
                    title: "hijacked".into(),
                    etag: etag.into(),
                    ..Default::default()
                }),
                update_mask: mask(&["title"]),
            },
        ))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in response"))
}

async fn delete(app: &TestApp, caller: &Caller, id: &str, etag: &str) -> Result<(), Status> {
    app.tickets()
        .delete_ticket(authed(
            &caller.token,
            pb::DeleteTicketRequest {
                id: id.into(),
                etag: etag.into(),
            },
        ))
        .await
        .map(|_| ())
}

/// Every ticket `caller` can list, following pages of `page_size`.
async fn list_all(app: &TestApp, caller: &Caller, page_size: i32) -> Vec<pb::Ticket> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .tickets()
            .list_tickets(authed(
                &caller.token,
                pb::ListTicketsRequest {
                    page_size,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        out.extend(page.tickets);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

fn ids(tickets: &[pb::Ticket]) -> BTreeSet<String> {
    tickets.iter().map(|t| t.id.clone()).collect()
}

/// A status with the parts that may legitimately differ between two
/// requests removed: the resource name (the id each request sent) and the
/// request id. Everything else — code, message, every detail and the
/// metadata keys — must be identical for a foreign id and a missing one.
fn normalized(status: &Status) -> (Code, String, Vec<String>, BTreeSet<String>) {
    let details = status
        .get_error_details_vec()
        .into_iter()
        .map(|d| match d {
            ErrorDetail::ErrorInfo(i) => format!(
                "ErrorInfo reason={} domain={} metadata={:?}",
                i.reason,
                i.domain,
                i.metadata.into_iter().collect::<BTreeMap<_, _>>()
            ),
            ErrorDetail::ResourceInfo(r) => format!(
                "ResourceInfo type={} owner={} description={}",
                r.resource_type, r.owner, r.description
            ),
            ErrorDetail::RequestInfo(r) => {
                assert!(!r.request_id.is_empty(), "empty request id");
                format!("RequestInfo serving_data={}", r.serving_data)
            }
            other => format!("{other:?}"),
        })
        .collect();
    let keys = status
        .metadata()
        .keys()
        .map(|k| match k {
            tonic::metadata::KeyRef::Ascii(k) => k.as_str().to_string(),
            tonic::metadata::KeyRef::Binary(k) => k.as_str().to_string(),
        })
        .collect();
    (status.code(), status.message().to_string(), details, keys)
}

/// Asserts NOT_FOUND for `foreign_id` indistinguishable from `missing_id`'s.
#[track_caller]
fn assert_same_not_found(foreign: &Status, foreign_id: &str, missing: &Status, missing_id: &str) {
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    assert_eq!(reason(foreign), "NOT_FOUND");
    let fr = foreign
        .get_error_details()
        .resource_info()
        .cloned()
        .expect("ResourceInfo on the foreign id");
    let mr = missing
        .get_error_details()
        .resource_info()
        .cloned()
        .expect("ResourceInfo on the missing id");
    assert_eq!(fr.resource_type, TICKET_TYPE);
    assert_eq!(fr.resource_name, foreign_id);
    assert_eq!(mr.resource_name, missing_id);
    let (f_req, m_req) = (
        foreign.get_error_details().request_info().cloned(),
        missing.get_error_details().request_info().cloned(),
    );
    assert!(f_req.is_some() && m_req.is_some(), "RequestInfo on both");
    assert_eq!(
        normalized(foreign),
        normalized(missing),
        "a foreign id must answer exactly like a missing one"
    );
}

/// Tenant A with three tickets, tenant B (an admin, the most privileged
/// role, so nothing below is a permission refusal) with one of its own.
async fn two_tenants(app: &TestApp) -> (Caller, Vec<pb::Ticket>, Caller, Vec<pb::Ticket>) {
    let a = app.caller(Role::Agent).await;
    let b = app.caller(Role::Admin).await;
    let mut a_tickets = Vec::new();
    for i in 0..3 {
        let mut t = new_ticket(&format!("A secret {i}"));
        t.tags = vec!["tenant-a".into()];
        t.assignee_id = a.user.to_string();
        a_tickets.push(create_ticket(app, &a, t).await);
    }
    let b_tickets = vec![create_ticket(app, &b, new_ticket("B's own")).await];
    (a, a_tickets, b, b_tickets)
}

/// A still sees exactly its original tickets, unchanged.
async fn assert_a_untouched(app: &TestApp, a: &Caller, originals: &[pb::Ticket]) {
    for t in originals {
        let now = get(app, a, &t.id).await.expect("A still has its ticket");
        assert_eq!(&now, t, "A's ticket changed");
    }
    assert_eq!(ids(&list_all(app, a, 50).await), ids(originals));
}

#[tokio::test]
async fn cross_tenant_get_answers_like_a_missing_id() {
    let app = spawn_app().await;
    let (a, a_tickets, b, _) = two_tenants(&app).await;
    for t in &a_tickets {
        let missing_id = Uuid::now_v7().to_string();
        let foreign = get(&app, &b, &t.id).await.expect_err("A's ticket for B");
        let missing = get(&app, &b, &missing_id).await.expect_err("no such ticket");
        assert_same_not_found(&foreign, &t.id, &missing, &missing_id);
    }
    assert_a_untouched(&app, &a, &a_tickets).await;
}

#[tokio::test]
async fn cross_tenant_update_answers_like_a_missing_id_and_changes_nothing() {
    let app = spawn_app().await;
    let (a, a_tickets, b, _) = two_tenants(&app).await;
    for t in &a_tickets {
        // Without an etag, and with A's real etag: neither reveals anything.
        for etag in ["", t.etag.as_str()] {
            let missing_id = Uuid::now_v7().to_string();
            let foreign = update_title(&app, &b, &t.id, etag)
                .await
                .expect_err("B updating A's ticket");
            let missing = update_title(&app, &b, &missing_id, etag)
                .await
                .expect_err("no such ticket");
            assert_same_not_found(&foreign, &t.id, &missing, &missing_id);
        }
    }
    assert_a_untouched(&app, &a, &a_tickets).await;
}

#[tokio::test]
async fn cross_tenant_delete_answers_like_a_missing_id_and_deletes_nothing() {
    let app = spawn_app().await;
    let (a, a_tickets, b, _) = two_tenants(&app).await;
    for t in &a_tickets {
        for etag in ["", t.etag.as_str()] {
            let missing_id = Uuid::now_v7().to_string();
            let foreign = delete(&app, &b, &t.id, etag).await.expect_err("B deleting A's ticket");
            let missing = delete(&app, &b, &missing_id, etag).await.expect_err("no such ticket");
            assert_same_not_found(&foreign, &t.id, &missing, &missing_id);
        }
    }
    assert_a_untouched(&app, &a, &a_tickets).await;

    // And the rows are really there (the owner sees past RLS).
    let mut owner = app.db.owner_conn().await;
    let n: i64 = sqlx::query_scalar("select count(*) from tickets where tenant_id = $1")
        .bind(a.tenant.0)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(n, a_tickets.len() as i64);
}

#[tokio::test]
async fn cross_tenant_list_never_shows_other_tenants_tickets() {
    let app = spawn_app().await;
    let (a, a_tickets, b, b_tickets) = two_tenants(&app).await;
    let a_ids = ids(&a_tickets);

    // Unfiltered, whole pages and one-by-one pages.
    for page_size in [0, 1, 500] {
        let seen = list_all(&app, &b, page_size).await;
        assert_eq!(ids(&seen), ids(&b_tickets), "page_size {page_size}");
        assert!(ids(&seen).is_disjoint(&a_ids));
    }
    // Filters that match only A's tickets find nothing for B.
    for req in [
        pb::ListTicketsRequest {
            assignee_id: a.user.to_string(),
            ..Default::default()
        },
        pb::ListTicketsRequest {
            tag: "tenant-a".into(),
            ..Default::default()
        },
        pb::ListTicketsRequest {
            order_by: "update_time desc".into(),
            ..Default::default()
        },
    ] {
        let seen = app
            .tickets()
            .list_tickets(authed(&b.token, req.clone()))
            .await
            .expect("list")
            .into_inner()
            .tickets;
        assert!(ids(&seen).is_disjoint(&a_ids), "{req:?} leaked {seen:?}");
    }

    // A's page token is no use to B (tokens are bound to the tenant).
    let first = app
        .tickets()
        .list_tickets(authed(
            &a.token,
            pb::ListTicketsRequest {
                page_size: 1,
                ..Default::default()
            },
        ))
        .await
        .expect("A's first page")
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let status = app
        .tickets()
        .list_tickets(authed(
            &b.token,
            pb::ListTicketsRequest {
                page_size: 1,
                page_token: first.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .expect_err("A's page token used by B");
    assert_field_violation(&status, "page_token", "INVALID_PAGE_TOKEN");

    // A still sees its own (and only its own).
    assert_eq!(ids(&list_all(&app, &a, 1).await), a_ids);
}

#[tokio::test]
async fn assigning_another_tenants_user_is_assignee_not_found() {
    let app = spawn_app().await;
    let (a, _, b, b_tickets) = two_tenants(&app).await;
    let b_colleague = app.colleague(&b, Role::Agent).await;
    let request_id = Uuid::now_v7().to_string();

    // Create: A's user is indistinguishable from no user at all.
    let create = |assignee: String, request_id: String| {
        let mut t = new_ticket("assign across tenants");
        t.assignee_id = assignee;
        let mut client = app.tickets();
        let req = authed(
            &b.token,
            pb::CreateTicketRequest {
                ticket: Some(t),
                request_id,
            },
        );
        async move { client.create_ticket(req).await }
    };
    let foreign = create(a.user.to_string(), request_id.clone())
        .await
        .expect_err("A's user as assignee");
    assert_field_violation(&foreign, "ticket.assignee_id", "ASSIGNEE_NOT_FOUND");
    let missing = create(Uuid::now_v7().to_string(), String::new())
        .await
        .expect_err("no such user");
    assert_field_violation(&missing, "ticket.assignee_id", "ASSIGNEE_NOT_FOUND");
    assert_eq!(foreign.message(), missing.message());
    assert_eq!(
        format!("{:?}", foreign.get_error_details().bad_request()),
        format!("{:?}", missing.get_error_details().bad_request())
    );

    // Nothing stored: no ticket, and the request_id was not claimed.
    assert_eq!(ids(&list_all(&app, &b, 50).await), ids(&b_tickets));
    let mut owner = app.db.owner_conn().await;
    let pointing_at_a: i64 = sqlx::query_scalar("select count(*) from tickets where assignee_id = $1")
        .bind(a.user.0)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(pointing_at_a, 3, "only A's own tickets point at A's user");
    let keys: i64 = sqlx::query_scalar("select count(*) from idempotency_keys where tenant_id = $1")
        .bind(b.tenant.0)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(keys, 0, "a refused create must not claim its request_id");
    // So the same request_id with a legitimate assignee goes through.
    let ok = create(b_colleague.user.to_string(), request_id)
        .await
        .expect("create with B's own user")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(ok.assignee_id, b_colleague.user.to_string());

    // Update: the same refusal, and B's ticket is unchanged.
    let original = &b_tickets[0];
    let status = app
        .tickets()
        .update_ticket(authed(
            &b.token,
            pb::UpdateTicketRequest {
                ticket: Some(pb::Ticket {
                    id: original.id.clone(),
                    assignee_id: a.user.to_string(),
                    ..Default::default()
                }),
                update_mask: mask(&["assignee_id"]),
            },
        ))
        .await
        .expect_err("A's user as assignee on update");
    assert_field_violation(&status, "ticket.assignee_id", "ASSIGNEE_NOT_FOUND");
    let after = get(&app, &b, &original.id).await.expect("B's ticket");
    assert_eq!(&after, original, "a refused update changed the ticket");
    let pointing_at_a: i64 = sqlx::query_scalar("select count(*) from tickets where assignee_id = $1")
        .bind(a.user.0)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(pointing_at_a, 3);
}

/// ListTickets with `x-tenant-id: value`.
async fn list_with_tenant_header(
    app: &TestApp,
    caller: &Caller,
    value: &str,
) -> Result<pb::ListTicketsResponse, Status> {
    let mut req = authed(&caller.token, pb::ListTicketsRequest::default());
    req.metadata_mut()
        .insert("x-tenant-id", value.parse().expect("metadata value"));
    app.tickets().list_tickets(req).await.map(|r| r.into_inner())
}

#[track_caller]
fn assert_permission_denied(status: &Status, expected: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(status), expected, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().expect("ErrorInfo").domain, "deskd");
    assert!(details.request_info().is_some(), "RequestInfo: {status:?}");
}

#[tokio::test]
async fn x_tenant_id_matching_the_credential_is_accepted() {
    let app = spawn_app().await;
    let a = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &a, new_ticket("mine")).await;
    let listed = list_with_tenant_header(&app, &a, &a.tenant.to_string())
        .await
        .expect("matching x-tenant-id");
    assert_eq!(ids(&listed.tickets), BTreeSet::from([t.id]));
}

#[tokio::test]
async fn x_tenant_id_of_another_tenant_is_tenant_mismatch() {
    let app = spawn_app().await;
    let (a, a_tickets, b, _) = two_tenants(&app).await;

    // B naming A's tenant gets nothing of A's: not a list...
    let status = list_with_tenant_header(&app, &b, &a.tenant.to_string())
        .await
        .expect_err("B claiming A's tenant");
    assert_permission_denied(&status, "TENANT_MISMATCH");
    // ...nor a ticket...
    let mut req = authed(
        &b.token,
        pb::GetTicketRequest {
            id: a_tickets[0].id.clone(),
        },
    );
    req.metadata_mut()
        .insert("x-tenant-id", a.tenant.to_string().parse().expect("value"));
    let status = app.tickets().get_ticket(req).await.expect_err("get");
    assert_permission_denied(&status, "TENANT_MISMATCH");
    // ...nor a write into A's tenant.
    let mut req = authed(
        &b.token,
        pb::CreateTicketRequest {
            ticket: Some(new_ticket("planted")),
            request_id: String::new(),
        },
    );
    req.metadata_mut()
        .insert("x-tenant-id", a.tenant.to_string().parse().expect("value"));
    let status = app.tickets().create_ticket(req).await.expect_err("create");
    assert_permission_denied(&status, "TENANT_MISMATCH");

    // A tenant id that exists nowhere is a mismatch too.
    let status = list_with_tenant_header(&app, &b, &Uuid::now_v7().to_string())
        .await
        .expect_err("unknown tenant in header");
    assert_permission_denied(&status, "TENANT_MISMATCH");

    assert_a_untouched(&app, &a, &a_tickets).await;
    let mut owner = app.db.owner_conn().await;
    let planted: i64 = sqlx::query_scalar("select count(*) from tickets where title = 'planted'")
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(planted, 0);
}

#[tokio::test]
async fn malformed_x_tenant_id_is_tenant_mismatch() {
    let app = spawn_app().await;
    let a = app.caller(Role::Agent).await;
    let own = a.tenant.to_string();
    for value in [
        "not-a-uuid".to_string(),
        String::new(),
        format!("{own},{own}"),
        format!("{own}x"),
        own[..own.len() - 1].to_string(),
    ] {
        let status = list_with_tenant_header(&app, &a, &value)
            .await
            .expect_err(&format!("x-tenant-id `{value}`"));
        assert_permission_denied(&status, "TENANT_MISMATCH");
    }
}

#[tokio::test]
async fn token_for_an_unknown_tenant_is_tenant_unknown() {
    let app = spawn_app().await;
    let a = app.caller(Role::Agent).await;
    let ghost_tenant = TenantId(Uuid::now_v7());

    // A tenant that does not exist, with an unknown user or with a real
    // user of another tenant: either way the tenant is what is refused.
    for user in [UserId(Uuid::now_v7()), a.user] {
        let token = app.token(ghost_tenant, user);
        let status = app
            .tickets()
            .list_tickets(authed(&token, pb::ListTicketsRequest::default()))
            .await
            .expect_err("unknown tenant");
        assert_permission_denied(&status, "TENANT_UNKNOWN");
    }

    // Signed claims built field by field say the same.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = app.sign(&Claims {
        sub: Uuid::now_v7().to_string(),
        tid: Uuid::now_v7().to_string(),
        iss: app.config.jwt.issuer.clone(),
        aud: app.config.jwt.audience.clone(),
        exp: now + 300,
        nbf: None,
        iat: now,
    });
    let status = app
        .tickets()
        .create_ticket(authed(
            &token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("nowhere")),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("unknown tenant");
    assert_permission_denied(&status, "TENANT_UNKNOWN");
}

#[tokio::test]
async fn suspended_tenant_is_tenant_suspended() {
    let app = spawn_app().await;
    let active = app.caller(Role::Agent).await;
    let suspended = app.caller(Role::Admin).await;
    // Suspend before the tenant's first request: lookups are cached.
    let mut owner = app.db.owner_conn().await;
    let changed = sqlx::query("update tenants set status = 'suspended' where id = $1")
        .bind(suspended.tenant.0)
        .execute(&mut owner)
        .await
        .expect("suspend");
    assert_eq!(changed.rows_affected(), 1);

    let status = app
        .tickets()
        .list_tickets(authed(&suspended.token, pb::ListTicketsRequest::default()))
        .await
        .expect_err("suspended tenant lists");
    assert_permission_denied(&status, "TENANT_SUSPENDED");
    let status = app
        .tickets()
        .create_ticket(authed(
            &suspended.token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("while suspended")),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("suspended tenant creates");
    assert_permission_denied(&status, "TENANT_SUSPENDED");
    // Confirming the tenant with x-tenant-id changes nothing.
    let status = list_with_tenant_header(&app, &suspended, &suspended.tenant.to_string())
        .await
        .expect_err("suspended tenant with x-tenant-id");
    assert_permission_denied(&status, "TENANT_SUSPENDED");

    let stored: i64 = sqlx::query_scalar("select count(*) from tickets where tenant_id = $1")
        .bind(suspended.tenant.0)
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing was written for the suspended tenant");

    // Other tenants are unaffected.
    create_ticket(&app, &active, new_ticket("business as usual")).await;
}

#[tokio::test]
async fn cross_tenant_requests_leave_a_working_tenant_working() {
    // B's failed attempts must not poison anything A relies on (cached
    // lookups, pooled connections): A can still read, update and delete.
    let app = spawn_app().await;
    let (a, a_tickets, b, _) = two_tenants(&app).await;
    for t in &a_tickets {
        let _ = get(&app, &b, &t.id).await.expect_err("B get");
        let _ = update_title(&app, &b, &t.id, "").await.expect_err("B update");
        let _ = delete(&app, &b, &t.id, "").await.expect_err("B delete");
    }
    let t = &a_tickets[0];
    let renamed = app
        .tickets()
        .update_ticket(authed(
            &a.token,
            pb::UpdateTicketRequest {
                ticket: Some(pb::Ticket {
                    id: t.id.clone(),
                    title: "renamed by A".into(),
                    etag: t.etag.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["title"]),
            },
        ))
        .await
        .expect("A updates its ticket")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(renamed.title, "renamed by A");
    delete(&app, &a, &a_tickets[1].id, "")
        .await
        .expect("A deletes its ticket");
    let left = ids(&list_all(&app, &a, 50).await);
    assert_eq!(left, BTreeSet::from([a_tickets[0].id.clone(), a_tickets[2].id.clone()]));
}
