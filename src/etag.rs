//! Etags (AIP-154): opaque strings that change with every write; and the
//! write clock they go with.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Now, at PostgreSQL's precision (microseconds), so a time returned to a
/// client equals the time stored.
pub fn now_micros() -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

/// The etag of version `version` of resource `id`.
pub fn etag_of(id: Uuid, version: i64) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update(version.to_be_bytes());
    let d = h.finalize();
    // `"` + 16 hex digits + `"`, without a formatter per byte (a ListTickets
    // page computes fifty of these).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(18);
    out.push('"');
    for b in &d[..8] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_version_and_resource() {
        let id = Uuid::now_v7();
        assert_ne!(etag_of(id, 1), etag_of(id, 2));
        assert_ne!(etag_of(id, 1), etag_of(Uuid::now_v7(), 1));
        assert_eq!(etag_of(id, 3), etag_of(id, 3));
    }

    #[test]
    fn an_etag_is_the_quoted_hex_of_the_digest_prefix() {
        let id = Uuid::nil();
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update(7i64.to_be_bytes());
        let d = h.finalize();
        let want: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(etag_of(id, 7), format!("\"{want}\""));
        assert_eq!(etag_of(id, 7).len(), 18);
    }
}
