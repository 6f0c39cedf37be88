//! What the fuzz targets share: an allocator that remembers the largest
//! allocation (so a target can assert that a parser's work is bounded by
//! its input), and the checks every refusal must pass (a precise
//! INVALID_ARGUMENT or UNAUTHENTICATED, never a panic or INTERNAL).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use deskd::error::{AppError, FieldViolation};

/// The system allocator, counting the largest single request since the
/// last [`largest_allocation_since`] call.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and panics (a fuzzer crash) when any single allocation inside
/// it exceeds `limit` bytes: a small input must never make a parser reserve
/// a large buffer.
pub fn bounded<T>(what: &str, limit: usize, f: impl FnOnce() -> T) -> T {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= limit,
        "{what}: an allocation of {largest} bytes (limit {limit})"
    );
    out
}

/// The allocation budget for parsing `input_len` bytes: a few times the
/// input (strings are copied, trimmed, lower-cased; a packed varint byte
/// becomes a 4-byte enum in a vector that may double) plus a constant for
/// fixed-size work.
pub fn budget(input_len: usize) -> usize {
    64 * 1024 + 16 * input_len
}

/// Whether `s` is an UPPER_SNAKE reason.
pub fn is_upper_snake(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `path` is a request field path: `name(.name)*`, each name
/// lower snake case with an optional `[index]`.
pub fn is_field_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|seg| {
            let (name, index) = match seg.split_once('[') {
                Some((n, rest)) => match rest.strip_suffix(']') {
                    Some(i) => (n, Some(i)),
                    None => return false,
                },
                None => (seg, None),
            };
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && index.is_none_or(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Panics unless `v` names a well-formed field path whose first segment is
/// one of `roots`, with an UPPER_SNAKE reason and a description.
pub fn check_violation(v: &FieldViolation, roots: &[&str]) {
    assert!(is_field_path(&v.field), "bad field path in {v:?}");
    let root = v.field.split(['.', '[']).next().unwrap_or_default();
    assert!(
        roots.contains(&root),
        "unexpected field {:?} (roots {roots:?})",
        v.field
    );
    assert!(is_upper_snake(v.reason), "bad reason in {v:?}");
    assert!(!v.description.is_empty(), "no description in {v:?}");
}

/// Panics unless `e` is INVALID_ARGUMENT with at least one well-formed
/// violation of a field under `roots`. An internal error, or any other
/// code, for a request that only failed validation is a bug.
pub fn check_invalid_argument(e: &AppError, roots: &[&str]) {
    match e {
        AppError::InvalidArgument(violations) => {
            assert!(!violations.is_empty(), "INVALID_ARGUMENT without a violation");
            for v in violations {
                check_violation(v, roots);
            }
        }
        other => panic!("validation answered {other:?}, not INVALID_ARGUMENT"),
    }
}

/// Panics unless `e` is UNAUTHENTICATED with an UPPER_SNAKE reason that
/// starts with `reason_prefix`; returns the reason.
pub fn check_unauthenticated(e: &AppError, reason_prefix: &str) -> &'static str {
    match e {
        AppError::Unauthenticated { reason, description } => {
            assert!(is_upper_snake(reason), "bad reason {reason:?}");
            assert!(
                reason.starts_with(reason_prefix),
                "reason {reason:?}, want {reason_prefix}*"
            );
            assert!(!description.is_empty());
            reason
        }
        other => panic!("a credential was refused with {other:?}, not UNAUTHENTICATED"),
    }
}

/// Whether `s` is trimmed (no leading or trailing white space).
pub fn is_trimmed(s: &str) -> bool {
    s.trim() == s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        for ok in [
            "ticket.title",
            "ticket.tags[3]",
            "update_mask.paths[0]",
            "statuses[12]",
            "tag",
        ] {
            assert!(is_field_path(ok), "{ok}");
        }
        for bad in ["", "Ticket", "a..b", "a[", "a[]", "a[x]", "a.", "ticket.tags[1]x"] {
            assert!(!is_field_path(bad), "{bad}");
        }
    }

    #[test]
    fn reasons() {
        assert!(is_upper_snake("INVALID_PAGE_TOKEN"));
        assert!(!is_upper_snake("invalid"));
        assert!(!is_upper_snake("_X"));
    }
}
