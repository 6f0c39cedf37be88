//! Users and API-key requests, from wire bytes to domain values: the first
//! byte picks the RPC, the rest is decoded with prost as tonic would, then
//! validated by the handler's own function (`users::grpc::validate_*`), in
//! bounded memory.
//!
//! Asserted: a domain value that keeps the contract's rules (a lower-case
//! trimmed e-mail with one `@` and a dotted domain, at most 320 bytes; a
//! trimmed display name of at most 200 characters; exactly the masked
//! fields patched; sorted unique grantable scopes; a page size of 1–500),
//! or INVALID_ARGUMENT whose every violation names a field path of the
//! request with an UPPER_SNAKE reason; never a panic or another code.

#![no_main]

use deskd::{
    proto::users::v1::{CreateApiKeyRequest, CreateUserRequest, ListUsersRequest, UpdateUserRequest},
    tickets::model::PAGE_SIZE_MAX,
    users::{
        grpc::{validate_create, validate_list, validate_new_key, validate_update},
        model::{DISPLAY_NAME_MAX_CHARS, Field, normalize_email, validate_display_name},
    },
};
use deskd_fuzz::{bounded, budget, check_invalid_argument, is_trimmed};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check_email(email: &str) {
    assert_eq!(
        normalize_email("e", email).as_deref(),
        Ok(email),
        "not normal: {email:?}"
    );
    assert!(email.len() <= 320 && is_trimmed(email));
    let Some((local, domain)) = email.split_once('@') else {
        panic!("no @ in {email:?}")
    };
    assert!(!local.is_empty() && !domain.contains('@') && domain.contains('.'));
}

fn check_display_name(name: &str) {
    assert_eq!(validate_display_name("d", name).as_deref(), Ok(name));
    assert!(is_trimmed(name) && name.chars().count() <= DISPLAY_NAME_MAX_CHARS);
    assert!(!name.chars().any(char::is_control));
}

fn create(bytes: &[u8]) {
    let Ok(req) = CreateUserRequest::decode(bytes) else {
        return;
    };
    let sent_request_id = req.request_id.clone();
    match validate_create(req.user, &req.request_id) {
        Ok((new, rid)) => {
            check_email(&new.email);
            check_display_name(&new.display_name);
            assert_eq!(rid.is_some(), !sent_request_id.is_empty());
        }
        Err(e) => check_invalid_argument(&e, &["user", "request_id"]),
    }
}

fn update(bytes: &[u8]) {
    let Ok(req) = UpdateUserRequest::decode(bytes) else {
        return;
    };
    let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
    let sent = req.user.clone();
    match validate_update(req.user, req.update_mask) {
        Ok((_, etag, patch)) => {
            assert!(!paths.is_empty(), "an update without a mask passed");
            let masked: Vec<Field> = paths.iter().filter_map(|p| Field::parse(p)).collect();
            assert_eq!(masked.len(), paths.len(), "an unknown mask path passed: {paths:?}");
            let mut fields = patch.fields();
            fields.sort_by_key(|f| *f as u8);
            let mut want = masked.clone();
            want.sort_by_key(|f| *f as u8);
            want.dedup();
            assert_eq!(fields, want, "the patch is not the mask");
            if let Some(e) = &patch.email {
                check_email(e);
            }
            if let Some(n) = &patch.display_name {
                check_display_name(n);
            }
            let sent = sent.unwrap_or_default();
            assert_eq!(etag.unwrap_or_default(), sent.etag);
            if let Some(active) = patch.active {
                assert_eq!(active, sent.active);
            }
        }
        Err(e) => check_invalid_argument(&e, &["user", "update_mask"]),
    }
}

fn list(bytes: &[u8]) {
    let Ok(req) = ListUsersRequest::decode(bytes) else {
        return;
    };
    let again = req.clone();
    match validate_list(req) {
        Ok((filter, size, token)) => {
            assert!((1..=PAGE_SIZE_MAX).contains(&size));
            assert_eq!(token, again.page_token);
            assert_eq!(filter.active, again.active);
            if let Some(p) = &filter.email_prefix {
                assert!(!p.is_empty() && p.len() <= 320 && is_trimmed(p) && p.to_lowercase() == *p);
            }
            let Ok((twice, _, _)) = validate_list(again) else {
                panic!("validation is not deterministic")
            };
            assert_eq!(filter.canonical(), twice.canonical());
        }
        Err(e) => check_invalid_argument(&e, &["page_size", "role", "kind", "email_prefix"]),
    }
}

fn new_key(bytes: &[u8]) {
    let Ok(req) = CreateApiKeyRequest::decode(bytes) else {
        return;
    };
    match validate_new_key(req.api_key) {
        Ok(key) => {
            assert!(!key.display_name.is_empty());
            check_display_name(&key.display_name);
            assert!(!key.scopes.is_empty());
            assert!(key.scopes.windows(2).all(|w| w[0] < w[1]), "scopes {:?}", key.scopes);
        }
        Err(e) => check_invalid_argument(&e, &["api_key"]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    bounded("decode and validate", budget(data.len()), || match which % 4 {
        0 => create(bytes),
        1 => update(bytes),
        2 => list(bytes),
        _ => new_key(bytes),
    });
});
