//! Verified-token cache: a token that verified once is not verified again
//! (signature, base64, JSON claims) until it expires or the keys change.
//!
//! - Only tokens that verified are cached, so unverifiable input never takes
//!   space; an entry answers only while `now < exp` (the claim itself, no
//!   leeway) and only for the key generation it was verified under: a key
//!   reload bumps the generation, and every earlier entry stops answering.
//! - Keyed by the whole token, compared in full (a map with a random
//!   per-process hasher), so a hit is exactly the bytes that verified.
//! - Bounded: at capacity, expired entries go, and if none had, all go.

use std::{
    collections::HashMap,
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::auth::Authenticated;

/// How many verified tokens are kept.
pub(super) const CAPACITY: usize = 10_000;

struct Entry {
    who: Authenticated,
    /// The `exp` claim (seconds since the epoch).
    exp: u64,
    generation: u64,
}

#[derive(Default)]
pub(super) struct VerifiedTokens {
    map: RwLock<HashMap<Box<str>, Entry>>,
    generation: AtomicU64,
}

impl VerifiedTokens {
    /// The key generation in force: read before verifying, passed to `insert`.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every entry verified under earlier keys stops answering.
    pub(super) fn keys_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Who `token` names, when it verified under the current keys and has not
    /// expired at `now`.
    pub(super) fn get(&self, token: &str, now: u64) -> Option<Authenticated> {
        let generation = self.generation();
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(token)
            .filter(|e| now < e.exp && e.generation == generation)
            .map(|e| e.who)
    }

    /// Records a token that verified under key generation `generation`.
    pub(super) fn insert(&self, token: &str, who: Authenticated, exp: u64, generation: u64, now: u64) {
        if now >= exp {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CAPACITY && !map.contains_key(token) {
            let current = self.generation();
            map.retain(|_, e| now < e.exp && e.generation == current);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(token.into(), Entry { who, exp, generation });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{EncodingKey, Header};
    use secrecy::SecretString;
    use uuid::Uuid;

    use super::*;
    use crate::{
        auth::jwt::{Claims, JwtKeys},
        config::JwtConfig,
        tenancy::{TenantId, UserId},
    };

    const SECRET: &str = "verified-cache-secret-0123456789abcdef";

    fn who() -> Authenticated {
        Authenticated {
            tenant_id: TenantId(Uuid::now_v7()),
            user_id: UserId(Uuid::now_v7()),
        }
    }

    #[test]
    fn an_entry_answers_until_exp_and_only_in_its_generation() {
        let cache = VerifiedTokens::default();
        let w = who();
        cache.insert("t", w, 1_000, cache.generation(), 900);
        assert_eq!(cache.get("t", 999), Some(w));
        assert_eq!(cache.get("t", 1_000), None, "exp is exclusive, no leeway");
        assert_eq!(cache.get("t2", 999), None);
        cache.keys_changed();
        assert_eq!(cache.get("t", 999), None, "verified under the old keys");
        // Verified before a reload, inserted after it: never answers.
        let before = cache.generation();
        cache.keys_changed();
        cache.insert("u", w, 1_000, before, 900);
        assert_eq!(cache.get("u", 950), None);
        // Already expired: not stored.
        cache.insert("late", w, 900, cache.generation(), 900);
        assert_eq!(cache.get("late", 899), None);
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = VerifiedTokens::default();
        let w = who();
        let g = cache.generation();
        for i in 0..CAPACITY {
            // Half of them expire at 1,000.
            let exp = if i % 2 == 0 { 1_000 } else { 5_000 };
            cache.insert(&format!("t{i}"), w, exp, g, 900);
        }
        assert_eq!(cache.len(), CAPACITY);
        // At capacity, past the short ones' exp: they go, the rest stay.
        cache.insert("new", w, 5_000, g, 2_000);
        assert_eq!(cache.len(), CAPACITY / 2 + 1);
        assert_eq!(cache.get("t1", 2_000), Some(w));
        // Full of live entries: all go.
        for i in 0..CAPACITY {
            cache.insert(&format!("x{i}"), w, 5_000, g, 2_000);
        }
        assert!(cache.len() <= CAPACITY);
    }

    fn keys() -> JwtKeys {
        JwtKeys::hs256(&SecretString::from(SECRET), &JwtConfig::default()).expect("keys")
    }

    fn token(claims: &Claims, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
        )
        .expect("sign")
    }

    #[test]
    fn only_tokens_that_verify_and_are_in_force_are_cached() {
        let k = keys();
        let w = who();
        let good = k.mint(w.tenant_id, w.user_id, Duration::from_secs(60)).expect("mint");
        assert_eq!(k.verify(&good).expect("verifies"), w);
        assert_eq!(k.verified.len(), 1);
        assert_eq!(k.verify(&good).expect("from the cache"), w);
        assert_eq!(k.verified.len(), 1);

        let now = jsonwebtoken::get_current_timestamp();
        let cfg = JwtConfig::default();
        let claims = |exp: u64, nbf: Option<u64>| Claims {
            sub: w.user_id.to_string(),
            tid: w.tenant_id.to_string(),
            iss: cfg.issuer.clone(),
            aud: cfg.audience.clone(),
            exp,
            nbf,
            iat: now,
        };
        // A wrong signature, and a token one byte off a cached one: refused,
        // not cached.
        assert!(
            k.verify(&token(&claims(now + 60, None), "another-secret-0123456789abcdef0123"))
                .is_err()
        );
        let mut tampered = good.clone();
        tampered.pop();
        assert!(k.verify(&tampered).is_err());
        // Expired but inside the leeway: accepted, not cached.
        assert_eq!(k.verify(&token(&claims(now - 1, None), SECRET)).expect("leeway"), w);
        // Not valid before a future time inside the leeway: not cached.
        assert_eq!(
            k.verify(&token(&claims(now + 60, Some(now + 30)), SECRET))
                .expect("leeway"),
            w
        );
        assert_eq!(k.verified.len(), 1, "only the good token is cached");
    }
}
