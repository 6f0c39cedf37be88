use super::*;
use time::macros::datetime;

fn ticket() -> Ticket {
    NewTicket {
        title: "t".into(),
        description: String::new(),
        status: Status::Open,
        priority: Priority::Normal,
        assignee_id: None,
        tags: vec![],
    }
    .into_ticket(Uuid::now_v7(), UserId(Uuid::now_v7()), datetime!(2026-01-01 0:00 UTC))
}

#[test]
fn titles() {
    assert_eq!(validate_title("f", "  hi  ").as_deref(), Ok("hi"));
    assert_eq!(validate_title("f", "   ").map_err(|v| v.reason), Err("REQUIRED"));
    assert!(validate_title("f", &"x".repeat(200)).is_ok());
    assert_eq!(
        validate_title("f", &"x".repeat(201)).map_err(|v| v.reason),
        Err("TOO_LONG")
    );
    // Characters, not bytes.
    assert!(validate_title("f", &"é".repeat(200)).is_ok());
}

#[test]
fn tags_are_normalised() {
    let raw = vec![" b".to_string(), "a".into(), "b".into()];
    assert_eq!(validate_tags("tags", &raw), Ok(vec!["a".to_string(), "b".to_string()]));
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    assert_eq!(
        validate_tags("tags", &too_many).map_err(|v| v[0].reason),
        Err("TOO_MANY")
    );
    let bad = vec!["ok".to_string(), String::new()];
    assert_eq!(
        validate_tags("tags", &bad).map_err(|v| v[0].field.clone()),
        Err("tags[1]".to_string())
    );
}

/// Like the `statuses` filter the fuzzer caught: 100,000 empty tags (200 KB
/// on the wire) must not become 100,000 violations.
#[test]
fn a_long_tag_list_is_one_violation() {
    let empty = vec![String::new(); 100_000];
    let v = validate_tags("ticket.tags", &empty).expect_err("refused");
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].field.as_str(), v[0].reason), ("ticket.tags", "TOO_MANY"));
    // Up to the entry limit, repeats are still accepted and de-duplicated.
    let repeats = vec!["same".to_string(); TAG_ENTRIES_MAX];
    assert_eq!(validate_tags("ticket.tags", &repeats), Ok(vec!["same".to_string()]));
    let one_more = vec!["same".to_string(); TAG_ENTRIES_MAX + 1];
    assert_eq!(validate_tags("ticket.tags", &one_more).map_err(|v| v.len()), Err(1));
}

#[test]
fn resolve_time_follows_status() {
    let mut t = ticket();
    let t1 = datetime!(2026-01-02 0:00 UTC);
    let t2 = datetime!(2026-01-03 0:00 UTC);
    let resolve = TicketPatch {
        status: Some(Status::Resolved),
        ..Default::default()
    };
    assert!(resolve.apply(&mut t, t1));
    assert_eq!(t.resolve_time, Some(t1));
    assert_eq!(t.version, 2);
    let close = TicketPatch {
        status: Some(Status::Closed),
        ..Default::default()
    };
    close.apply(&mut t, t2);
    assert_eq!(t.resolve_time, Some(t1), "kept from RESOLVED to CLOSED");
    let reopen = TicketPatch {
        status: Some(Status::Open),
        ..Default::default()
    };
    reopen.apply(&mut t, t2);
    assert_eq!(t.resolve_time, None);
    // A no-op patch changes nothing, not even the version.
    let v = t.version;
    assert!(!reopen.apply(&mut t, t2));
    assert_eq!(t.version, v);
}

#[test]
fn order_by() {
    assert_eq!(parse_order_by("").expect("ok"), Order::default());
    assert_eq!(
        parse_order_by("update_time").expect("ok"),
        Order {
            field: OrderField::UpdateTime,
            desc: false
        }
    );
    assert_eq!(
        parse_order_by("create_time DESC").expect("ok"),
        Order {
            field: OrderField::CreateTime,
            desc: true
        }
    );
    assert!(parse_order_by("title").is_err());
    assert!(parse_order_by("create_time sideways").is_err());
}

#[test]
fn etag_changes_with_version() {
    let mut t = ticket();
    let a = t.etag();
    t.version += 1;
    assert_ne!(a, t.etag());
}
