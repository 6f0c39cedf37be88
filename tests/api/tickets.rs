//! Tickets CRUD: every RPC's success, validation and not-found paths.

use deskd::users::model::Role;

use crate::helpers::*;

#[tokio::test]
async fn create_then_get_round_trips() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let created = create_ticket(&app, &alice, new_ticket("  Printer on fire  ")).await;
    assert_eq!(created.title, "Printer on fire");
    let got = app
        .tickets()
        .get_ticket(authed(
            &alice.token,
            deskd::proto::tickets::v1::GetTicketRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(got, created);
    assert_eq!(got.reporter_id, alice.user.to_string());
}
