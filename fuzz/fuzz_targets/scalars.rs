//! The small parsers of client strings and numbers: the `grpc-timeout`
//! header, the `authorization` bearer value, `x-request-id`, operation
//! names, `order_by`, enum spellings, mask paths, scopes, page sizes and
//! timestamps. Each must refuse or give a value that means what the input
//! said: the timeout equals digits × unit, a bearer token is the trimmed
//! part after `Bearer `, a kept request id is 1–128 safe characters, a
//! spelling parses only to the value whose spelling it is, a timestamp
//! round-trips, and every refusal names its field.
//!
//! Input: 16 bytes of numbers (page size, seconds, nanos, little-endian),
//! then the text (UTF-8, as header values and proto strings are).

#![no_main]

use std::time::Duration;

use deskd::{
    auth::Permission,
    grpc_util::{from_timestamp, to_timestamp},
    middleware::{authn::bearer_token, deadline::parse_grpc_timeout, request_id::well_formed},
    operations::model::parse_name,
    tickets::model::{self as tickets, Field, OrderField, Priority, Status, parse_order_by},
    users::model::{self as users, Role, UserKind},
};
use deskd_fuzz::{check_violation, is_trimmed};
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    text: &'a str,
    number: i32,
    seconds: i64,
    nanos: i32,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Option<Self> {
        let (n, rest) = data.split_first_chunk::<4>()?;
        let (s, rest) = rest.split_first_chunk::<8>()?;
        let (ns, rest) = rest.split_first_chunk::<4>()?;
        Some(Self {
            text: std::str::from_utf8(rest).ok()?,
            number: i32::from_le_bytes(*n),
            seconds: i64::from_le_bytes(*s),
            nanos: i32::from_le_bytes(*ns),
        })
    }
}

fn grpc_timeout(s: &str) {
    let Some(d) = parse_grpc_timeout(s) else { return };
    assert!((2..=9).contains(&s.len()), "{s:?}");
    let (digits, unit) = s.split_at(s.len() - 1);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    let Ok(n) = digits.parse::<u64>() else {
        panic!("{s:?} parsed to {d:?}")
    };
    let want = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        other => panic!("unit {other:?} accepted"),
    };
    assert_eq!(d, want, "{s:?}");
}

fn bearer(s: &str) {
    let Some(token) = bearer_token(s) else { return };
    let Some((scheme, rest)) = s.split_once(' ') else {
        panic!("{s:?}")
    };
    assert!(scheme.eq_ignore_ascii_case("bearer"));
    assert!(!token.is_empty() && is_trimmed(token) && rest.trim() == token);
}

fn spellings(s: &str) {
    if let Some(v) = Status::parse(s) {
        assert_eq!(v.as_str(), s);
    }
    if let Some(v) = Priority::parse(s) {
        assert_eq!(v.as_str(), s);
    }
    if let Ok(v) = s.parse::<Role>() {
        assert_eq!(v.as_str(), s);
    }
    if let Some(v) = UserKind::parse(s) {
        assert_eq!(v.as_str(), s);
    }
    if let Some(v) = Permission::parse_scope(s) {
        assert_eq!(v.as_str(), s);
    }
    // Mask paths name exactly one field, never a wildcard or a nested path.
    if tickets::Field::parse(s).is_some() || users::Field::parse(s).is_some() {
        assert!(
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{s:?}"
        );
    }
    let _ = Field::parse(s);
}

fn order_by(s: &str) {
    match parse_order_by(s) {
        Ok(o) => {
            let words: Vec<&str> = s.split_whitespace().collect();
            match words.first() {
                None => assert_eq!(o, Default::default()),
                Some(&"create_time") => assert_eq!(o.field, OrderField::CreateTime),
                Some(&"update_time") => assert_eq!(o.field, OrderField::UpdateTime),
                Some(w) => panic!("ordered by {w:?}"),
            }
            if let Some(dir) = words.get(1) {
                assert_eq!(o.desc, dir.eq_ignore_ascii_case("desc"));
            }
        }
        Err(v) => {
            check_violation(&v, &["order_by"]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::new(data) else { return };
    let s = input.text;
    grpc_timeout(s);
    bearer(s);
    if well_formed(s) {
        assert!((1..=128).contains(&s.len()));
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)));
    }
    match parse_name("name", s) {
        Ok(id) => assert_eq!(parse_name("name", &format!("operations/{id}")), Ok(id)),
        Err(v) => check_violation(&v, &["name"]),
    }
    spellings(s);
    order_by(s);
    match tickets::page_size(input.number) {
        Ok(n) => assert!(input.number >= 0 && (1..=tickets::PAGE_SIZE_MAX).contains(&n)),
        Err(v) => {
            assert!(input.number < 0);
            check_violation(&v, &["page_size"]);
        }
    }
    let ts = prost_types::Timestamp {
        seconds: input.seconds,
        nanos: input.nanos,
    };
    match from_timestamp("t", ts) {
        Ok(t) => assert_eq!(to_timestamp(t), ts, "not a round trip"),
        Err(v) => check_violation(&v, &["t"]),
    }
});
