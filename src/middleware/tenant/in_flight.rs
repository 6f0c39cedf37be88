//! The per-tenant cap on RPCs in flight: one tenant's callers can hold at
//! most `server.max_in_flight_per_tenant` of the replica's
//! `server.max_in_flight` permits, so a tenant that opens many slow RPCs
//! (streams whose request bodies never come, say) cannot shed every other
//! tenant's calls.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::tenancy::TenantId;

/// Counts each tenant's RPCs in flight. A tenant has an entry only while it
/// has RPCs in flight, so the map is as large as the number of tenants busy
/// at this moment.
#[derive(Clone)]
pub struct TenantInFlight {
    limit: usize,
    counts: Arc<Mutex<HashMap<TenantId, usize>>>,
}

/// One RPC's place in its tenant's count, given back on drop.
pub struct InFlightGuard {
    tenant: TenantId,
    counts: Arc<Mutex<HashMap<TenantId, usize>>>,
}

impl TenantInFlight {
    /// At most `limit` RPCs in flight per tenant.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Arc::default(),
        }
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A place for one more of `tenant`'s RPCs, or `None` when it already
    /// has `limit` in flight.
    pub fn try_enter(&self, tenant: TenantId) -> Option<InFlightGuard> {
        // A poisoned lock only means a panic elsewhere while it was held;
        // the counts themselves are always consistent.
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(tenant).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(InFlightGuard {
            tenant,
            counts: self.counts.clone(),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn each_tenant_gets_its_own_limit_and_places_come_back_on_drop() {
        let cap = TenantInFlight::new(2);
        let (a, b) = (TenantId(Uuid::now_v7()), TenantId(Uuid::now_v7()));
        let a1 = cap.try_enter(a);
        let a2 = cap.try_enter(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(cap.try_enter(a).is_none(), "a third RPC of the same tenant");
        assert!(cap.try_enter(b).is_some(), "another tenant is not affected");
        drop(a1);
        let a3 = cap.try_enter(a);
        assert!(a3.is_some(), "a place freed by a finished RPC");
        drop((a2, a3));
        assert_eq!(cap.tracked(), 0, "idle tenants leave no entry behind");
    }
}
