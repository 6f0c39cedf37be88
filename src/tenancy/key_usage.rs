//! `last_use_time` of API keys, recorded without a database write per
//! request: uses are noted in memory and written in one statement per tenant
//! every flush interval (and at shutdown).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{TenantId, TenantTx, tx::Budget};
use crate::users;

/// Pending key uses, by tenant.
#[derive(Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<TenantId, HashMap<Uuid, OffsetDateTime>>>,
}

impl KeyUsage {
    /// Notes that `key` of `tenant` was used now.
    pub fn record(&self, tenant: TenantId, key: Uuid) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(tenant).or_default().insert(key, OffsetDateTime::now_utc());
        }
    }

    /// Writes every pending use; what fails to write is kept for the next flush.
    pub async fn flush(&self, pool: &PgPool, timeout: Duration) {
        let batch = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        for (tenant, uses) in batch {
            let list: Vec<(Uuid, OffsetDateTime)> = uses.iter().map(|(k, t)| (*k, *t)).collect();
            let result = async {
                let mut tx = TenantTx::begin(pool, tenant, Budget::new(None, timeout)).await?;
                users::store::record_key_use(tx.conn(), tenant, &list).await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, tenant_id = %tenant, keys = list.len(), "could not record API key use; will retry");
                if let Ok(mut p) = self.pending.lock() {
                    let entry = p.entry(tenant).or_default();
                    for (k, t) in uses {
                        entry.entry(k).or_insert(t);
                    }
                }
            }
        }
    }
}
