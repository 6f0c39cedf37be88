//! The Users service: self-service and its limits, and GetCurrentUser.

use std::collections::BTreeSet;

use deskd::{
    auth::Permissions,
    proto::users::v1::{self as upb, GetCurrentUserResponse},
    users::model::Role,
};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

fn pb_role(r: Role) -> upb::Role {
    match r {
        Role::Admin => upb::Role::Admin,
        Role::Agent => upb::Role::Agent,
        Role::Viewer => upb::Role::Viewer,
    }
}

fn permission_names(p: Permissions) -> Vec<String> {
    p.to_vec().iter().map(|p| p.as_str().to_string()).collect()
}

async fn assert_current_user_for_role(role: Role) {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let me = if role == Role::Admin {
        admin.clone()
    } else {
        app.colleague(&admin, role).await
    };
    let GetCurrentUserResponse {
        user,
        tenant_id,
        permissions,
        api_key_id,
    } = whoami(&app, &me.token).await.expect("GetCurrentUser");
    let user = user.expect("user");
    assert_eq!(user, get_user(&app, &admin.token, &me.user.to_string()).await);
    assert_eq!(user.id, me.user.to_string());
    assert_eq!(user.role, pb_role(role) as i32);
    assert_eq!(user.kind, upb::UserKind::Person as i32);
    assert!(user.active);
    assert_eq!(tenant_id, me.tenant.to_string());
    assert_eq!(api_key_id, "");
    let expected = permission_names(Permissions::for_role(role));
    let got: BTreeSet<&String> = permissions.iter().collect();
    assert_eq!(got.len(), permissions.len(), "duplicates in {permissions:?}");
    assert_eq!(
        got,
        expected.iter().collect::<BTreeSet<_>>(),
        "permissions of a {role:?}"
    );
}

// ---------------------------------------------------------------------------
// Self-service and its limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn agents_and_viewers_may_rename_themselves() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        let before = get_user(&app, &admin.token, &me.user.to_string()).await;
        let name = format!("Renamed {role:?}");
        let after = try_update_user(
            &app,
            &me.token,
            upb::User {
                id: me.user.to_string(),
                display_name: name.clone(),
                etag: before.etag.clone(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .expect("self rename");
        assert_eq!(after.display_name, name);
        assert_eq!(after.role, before.role);
        assert_eq!(after.email, before.email);
        assert_eq!(get_user(&app, &admin.token, &me.user.to_string()).await, after);
    }
}

#[tokio::test]
async fn agents_and_viewers_may_not_change_their_own_email_role_or_active() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        let before = get_user(&app, &admin.token, &me.user.to_string()).await;
        for (path, user) in [
            (
                "email",
                upb::User {
                    email: unique_email("mine"),
                    ..before.clone()
                },
            ),
            (
                "role",
                upb::User {
                    role: upb::Role::Admin as i32,
                    ..before.clone()
                },
            ),
            (
                "active",
                upb::User {
                    active: false,
                    ..before.clone()
                },
            ),
        ] {
            let err = try_update_user(&app, &me.token, user, &[path])
                .await
                .expect_err("self-service limit");
            assert_permission_missing(&err, "users:write");
        }
        assert_eq!(get_user(&app, &admin.token, &me.user.to_string()).await, before);
    }
}

#[tokio::test]
async fn agents_and_viewers_may_not_rename_anyone_else() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    for (caller, target) in [
        (&agent, &viewer),
        (&viewer, &agent),
        (&agent, &admin),
        (&viewer, &admin),
    ] {
        let before = get_user(&app, &admin.token, &target.user.to_string()).await;
        let err = try_update_user(
            &app,
            &caller.token,
            upb::User {
                display_name: "Renamed by a colleague".into(),
                ..before.clone()
            },
            &["display_name"],
        )
        .await
        .expect_err("renaming another user");
        assert_permission_missing(&err, "users:write");
        assert_eq!(get_user(&app, &admin.token, &target.user.to_string()).await, before);
    }
}

#[tokio::test]
async fn mass_assignment_of_role_or_active_is_denied_to_non_admins() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let bystander = app.colleague(&admin, Role::Agent).await;
    let masks: &[&[&str]] = &[
        &["role"],
        &["active"],
        &["role", "active"],
        &["display_name", "role"],
        &["display_name", "active"],
        &["display_name", "role", "active"],
        &["active", "display_name"],
    ];
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        for target in [&me, &bystander, &admin] {
            let id = target.user.to_string();
            let before = get_user(&app, &admin.token, &id).await;
            for paths in masks {
                for (new_role, active) in [(upb::Role::Admin, false), (upb::Role::Viewer, true)] {
                    let err = try_update_user(
                        &app,
                        &me.token,
                        upb::User {
                            display_name: "Escalated".into(),
                            role: new_role as i32,
                            active,
                            ..before.clone()
                        },
                        paths,
                    )
                    .await
                    .expect_err("mass assignment");
                    assert_permission_missing(&err, "users:write");
                }
            }
            assert_eq!(get_user(&app, &admin.token, &id).await, before, "{role:?} changed {id}");
        }
        // Still only what the role grants.
        let now = whoami(&app, &me.token).await.expect("whoami");
        assert_eq!(now.user.expect("user").role, pb_role(role) as i32);
        assert_eq!(now.permissions.len(), Permissions::for_role(role).to_vec().len());
    }
}

#[tokio::test]
async fn admins_cannot_change_their_own_role() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = admin.user.to_string();
    let before = get_user(&app, &admin.token, &id).await;
    for paths in [&["role"][..], &["display_name", "role"][..]] {
        for role in [upb::Role::Agent, upb::Role::Viewer] {
            let err = try_update_user(
                &app,
                &admin.token,
                upb::User {
                    display_name: "Demoted".into(),
                    role: role as i32,
                    ..before.clone()
                },
                paths,
            )
            .await
            .expect_err("own role");
            assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
            let details = err.get_error_details();
            let pf = details.precondition_failure().expect("PreconditionFailure");
            assert_eq!(pf.violations[0].r#type, "SELF_LOCKOUT");
        }
    }
    assert_eq!(get_user(&app, &admin.token, &id).await, before);
    // Renaming oneself stays possible.
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            display_name: "Still admin".into(),
            ..before
        },
        &["display_name"],
    )
    .await
    .expect("self rename");
}

#[tokio::test]
async fn admins_cannot_deactivate_themselves() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = admin.user.to_string();
    let before = get_user(&app, &admin.token, &id).await;
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            active: false,
            ..before.clone()
        },
        &["active"],
    )
    .await
    .expect_err("self deactivation via update");
    assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
    let err = deactivate(&app, &admin.token, &id, "")
        .await
        .expect_err("self deactivation");
    assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
    assert_eq!(get_user(&app, &admin.token, &id).await, before);
    whoami(&app, &admin.token).await.expect("the admin still works");
}

// ---------------------------------------------------------------------------
// GetCurrentUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_current_user_for_an_admin() {
    assert_current_user_for_role(Role::Admin).await;
}

#[tokio::test]
async fn get_current_user_for_an_agent() {
    assert_current_user_for_role(Role::Agent).await;
}

#[tokio::test]
async fn get_current_user_for_a_viewer() {
    assert_current_user_for_role(Role::Viewer).await;
}
