//! Background jobs of the Users area: the welcome e-mail sent to a person
//! created through CreateUser.

use serde::{Deserialize, Serialize};

use super::{model::UserKind, store};
use crate::{
    jobs::{Job, worker::JobCtx},
    mail::{Email, Mailer},
    tenancy::{UserId, store as tenants},
};

/// Sends a new user the welcome e-mail. Enqueued with CreateUser, in its
/// transaction, with the unique key `welcome:<user id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeEmail {
    /// The new user.
    pub user_id: UserId,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "users.welcome_email";
    const MAX_ATTEMPTS: i32 = 3;
}

impl WelcomeEmail {
    /// The job's unique key.
    pub fn unique_key(&self) -> String {
        format!("welcome:{}", self.user_id)
    }
}

/// The message a user of `tenant_name` gets.
pub fn welcome_message(to: &str, display_name: &str, tenant_name: &str) -> Email {
    let greeting = if display_name.trim().is_empty() {
        "Hello,".to_string()
    } else {
        format!("Hello {display_name},")
    };
    Email {
        to: to.to_string(),
        subject: format!("Welcome to {tenant_name}"),
        body: format!(
            "{greeting}\n\n\
             Welcome to {tenant_name}!\n\n\
             An account on the {tenant_name} helpdesk\n\
             was created for {to}.\n"
        ),
    }
}

/// Runs a `WelcomeEmail`: loads the user and the tenant's name in the job's
/// tenant transaction, then sends the message. A user who is gone, or is not
/// a person with an e-mail, gets nothing (success: retrying cannot help).
pub async fn send_welcome_email(ctx: JobCtx, job: WelcomeEmail, mailer: Mailer) -> Result<(), String> {
    let mut tx = ctx
        .tx()
        .await
        .map_err(|e| format!("beginning the tenant transaction: {e}"))?;
    let tenant = tx.tenant();
    let user = store::get_user(tx.conn(), tenant, job.user_id)
        .await
        .map_err(|e| format!("loading user {}: {e}", job.user_id))?;
    let tenant_row = tenants::get_tenant(tx.conn(), tenant)
        .await
        .map_err(|e| format!("loading tenant {tenant}: {e}"))?;
    tx.commit().await.map_err(|e| format!("committing: {e}"))?;
    let (Some(user), Some(tenant_row)) = (user, tenant_row) else {
        tracing::info!(user_id = %job.user_id, "welcome e-mail skipped: the user or tenant is gone");
        return Ok(());
    };
    if user.kind != UserKind::Person || user.email.is_empty() {
        return Ok(());
    }
    mailer
        .send(&welcome_message(&user.email, &user.display_name, &tenant_row.name))
        .await
}
