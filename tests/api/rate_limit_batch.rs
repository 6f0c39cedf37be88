//! The shared (Redis) rate limiter decides concurrent requests in batches:
//! one script call for every request waiting at that moment, with the same
//! answers as one call per request in arrival order.

use std::{sync::Arc, time::Duration};

use deskd::{
    config::{Config, Quota},
    kv::Redis,
    ratelimit::{Check, RateLimiter, RedisRateLimiter},
};
use futures_util::future::join_all;
use secrecy::SecretString;

use crate::redis::{clean, prefix, redis_addr};

fn limiter(prefix: &str) -> RedisRateLimiter {
    let mut cfg = Config::default().redis;
    cfg.url = SecretString::from(format!("redis://{}/0", redis_addr()));
    cfg.key_prefix = prefix.to_string();
    let redis = Redis::from_config(&cfg).expect("redis config").expect("a redis url");
    RedisRateLimiter::new(redis)
}

fn per_hour(burst: u32) -> Quota {
    Quota {
        requests: burst,
        period: Duration::from_secs(3600),
        burst,
    }
}

/// One request's quotas: its principal's, then the tenant's.
fn request(principal: usize) -> Vec<Check> {
    vec![
        Check {
            key: format!("rl:{{t}}:p:{principal}"),
            quota: per_hour(3),
        },
        Check {
            key: "rl:{t}:t".into(),
            quota: per_hour(5),
        },
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_share_script_calls_and_keep_all_or_nothing_order() {
    let p = prefix();
    let l = limiter(&p);
    // Twelve requests at once, principals 0..4 in turn. The tenant admits
    // five: the first five in arrival order, whatever the batching.
    let requests: Vec<Vec<Check>> = (0..12).map(|i| request(i % 4)).collect();
    let results = join_all(requests.iter().map(|r| l.check_all(r))).await;
    for (i, r) in results.iter().enumerate() {
        let d = r.as_ref().expect("redis is up");
        assert_eq!(d[1].allowed, i < 5, "request {i}: tenant decision {:?}", d[1]);
        // The principal quota (3 each) never refuses here: at most 3 per principal.
        assert!(d[0].allowed, "request {i}: principal decision {:?}", d[0]);
        if i < 5 {
            assert_eq!(d[1].remaining, 4 - i as u32, "request {i}");
        }
    }
    // The first request found no call in flight and went alone; the other
    // eleven queued behind it and were decided by one more call.
    assert_eq!(l.script_calls(), 2);

    // All-or-nothing: the refused requests did not count against their
    // principals. Principal 1 was admitted once (request 1): two left.
    let alone = [Check {
        key: "rl:{t}:p:1".into(),
        quota: per_hour(3),
    }];
    let d = l.check_all(&alone).await.expect("redis is up");
    assert!(d[0].allowed);
    assert_eq!(d[0].remaining, 1);
    clean(&p).await;
}

#[tokio::test(flavor = "current_thread")]
async fn requests_queued_behind_a_cancelled_request_are_still_decided() {
    let p = prefix();
    let l = Arc::new(limiter(&p));
    let first = request(0);
    let mut leader = Box::pin(l.check_all(&first));
    // The first request starts its own call and waits on Redis…
    assert!(futures_util::poll!(&mut leader).is_pending());
    // …others queue behind it…
    let queued: Vec<Vec<Check>> = (1..4).map(request).collect();
    let mut waiters: Vec<_> = queued.iter().map(|r| Box::pin(l.check_all(r))).collect();
    for w in &mut waiters {
        assert!(futures_util::poll!(w).is_pending());
    }
    // …and the first is cancelled (its client went away) mid-call.
    drop(leader);
    let decided = tokio::time::timeout(Duration::from_secs(5), join_all(waiters))
        .await
        .expect("the queued requests must not wait on a cancelled one");
    for d in decided {
        assert!(d.expect("redis is up").iter().all(|d| d.allowed));
    }
    clean(&p).await;
}
