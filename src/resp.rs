//! A reader of RESP2 replies (the Redis protocol) over a byte buffer, for
//! the one large reply tenantry reads on a connection of its own: a presence
//! `list`'s `HGETALL` (see [`crate::redis_store::RedisStore::eval_then_spans`]).
//!
//! The `redis` crate turns every item of a reply into a `Value` (an
//! allocation each, through a general parser): for the 4,000 strings of a
//! 1,000-user room that was ~650 µs of a ~1.7 ms `list`. This reader finds
//! where a whole reply ends ([`Scanner`], resumable as more bytes arrive, no
//! recursion however deep the nesting) and where each string of an array of
//! bulk strings is ([`bulk_strings`]): spans of the buffer, nothing copied.
//!
//! Pure: no I/O, no Python. Anything that is not well-formed RESP2 is an
//! error naming what was wrong; a length never makes it allocate more than
//! the bytes it was given, and no input panics (tested with arbitrary bytes).

use std::fmt;
use std::ops::Range;

/// Why bytes are not a RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespError {
    pub reason: String,
    /// Offset in the buffer where it was found.
    pub at: usize,
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed Redis reply at byte {}: {}",
            self.at, self.reason
        )
    }
}

impl std::error::Error for RespError {}

fn bad(at: usize, reason: impl Into<String>) -> RespError {
    RespError {
        reason: reason.into(),
        at,
    }
}

/// Redis' own bound on one bulk string (`proto-max-bulk-len`): a longer
/// length is not waited for.
pub const MAX_BULK: usize = 512 * 1024 * 1024;

/// The head of one RESP2 value: its type and what its first line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// `+OK`: the line's span.
    Simple(Range<usize>),
    /// `-ERR …`: the message's span.
    Error(Range<usize>),
    Integer(i64),
    /// `$n`: the payload's span; `None` for the null bulk string (`$-1`).
    Bulk(Option<Range<usize>>),
    /// `*n`: how many values follow; `None` for the null array (`*-1`).
    Array(Option<usize>),
}

/// Reads the value head at `at`: `Ok(None)` while the bytes end before it
/// does (a bulk string's head includes its payload); else the head and the
/// offset after it (after the payload for a bulk string, before the
/// elements for an array).
pub fn head(buf: &[u8], at: usize) -> Result<Option<(Head, usize)>, RespError> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let line_start = at + 1;
    let Some(cr) = buf[line_start..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let line_end = line_start + cr;
    match buf.get(line_end + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(bad(line_end, "a line not ended by CRLF")),
    }
    let next = line_end + 2;
    let line = &buf[line_start..line_end];
    let head = match kind {
        b'+' => Head::Simple(line_start..line_end),
        b'-' => Head::Error(line_start..line_end),
        b':' => Head::Integer(integer(line).ok_or_else(|| bad(line_start, "not an integer"))?),
        b'$' => {
            let n = integer(line).ok_or_else(|| bad(line_start, "not a length"))?;
            if n == -1 {
                return Ok(Some((Head::Bulk(None), next)));
            }
            let n = usize::try_from(n).map_err(|_| bad(line_start, "a negative length"))?;
            if n > MAX_BULK {
                return Err(bad(line_start, "a bulk string over 512 MB"));
            }
            let end = next
                .checked_add(n)
                .ok_or_else(|| bad(line_start, "a length past the end of memory"))?;
            let Some(crlf) = end.checked_add(2).and_then(|e| buf.get(end..e)) else {
                return Ok(None);
            };
            if crlf != b"\r\n" {
                return Err(bad(end, "a bulk string longer than its length"));
            }
            return Ok(Some((Head::Bulk(Some(next..end)), end + 2)));
        }
        b'*' => {
            let n = integer(line).ok_or_else(|| bad(line_start, "not a count"))?;
            if n == -1 {
                Head::Array(None)
            } else {
                Head::Array(Some(
                    usize::try_from(n).map_err(|_| bad(line_start, "a negative count"))?,
                ))
            }
        }
        other => {
            return Err(bad(
                at,
                format!("type byte {:?} is not RESP2", char::from(other)),
            ))
        }
    };
    Ok(Some((head, next)))
}

/// A decimal integer with an optional `-`; `None` when empty, not digits or
/// out of range.
fn integer(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// Finds where `replies` whole replies starting at `start` end, as bytes
/// arrive: call [`Scanner::advance`] after each read.
#[derive(Clone, Debug)]
pub struct Scanner {
    at: usize,
    /// Values still to pass (replies, and elements of arrays begun).
    pending: usize,
    /// Where each top-level reply starts, then ends.
    bounds: Vec<usize>,
    /// Top-level replies still to begin.
    top: usize,
    /// The reply whose bulk strings are kept as they pass
    /// ([`Scanner::collecting`]), its heads counted.
    collect: Option<usize>,
    spans: Vec<Range<usize>>,
    heads: usize,
}

impl Scanner {
    pub fn new(start: usize, replies: usize) -> Scanner {
        Scanner {
            at: start,
            pending: 0,
            bounds: Vec::with_capacity(replies + 1),
            top: replies,
            collect: None,
            spans: Vec::new(),
            heads: 0,
        }
    }

    /// Like [`Scanner::new`], keeping the spans of reply `reply`'s bulk
    /// strings as they pass, so [`Scanner::bulk_strings`] needs no second
    /// pass over them.
    pub fn collecting(start: usize, replies: usize, reply: usize) -> Scanner {
        Scanner {
            collect: Some(reply),
            ..Scanner::new(start, replies)
        }
    }

    /// The spans of the collected reply when it is an array of bulk
    /// strings (once [`Scanner::advance`] returned true); else what
    /// [`bulk_strings`] says of it.
    pub fn bulk_strings(self, buf: &[u8]) -> Result<Vec<Range<usize>>, RespError> {
        let Some(i) = self.collect.filter(|&i| i + 1 < self.bounds.len()) else {
            return Err(bad(buf.len(), "no reply collected"));
        };
        let start = self.bounds[i];
        // One head per element and the array's: nothing else was inside.
        match head(buf, start)? {
            Some((Head::Array(Some(n)), _)) if n == self.spans.len() && self.heads == n + 1 => {
                Ok(self.spans)
            }
            _ => bulk_strings(buf, start),
        }
    }

    /// Moves over what `buf` holds; true once every reply is whole.
    pub fn advance(&mut self, buf: &[u8]) -> Result<bool, RespError> {
        loop {
            if self.pending == 0 {
                if self.top == 0 {
                    if self.bounds.last() != Some(&self.at) {
                        self.bounds.push(self.at);
                    }
                    return Ok(true);
                }
                self.bounds.push(self.at);
                self.top -= 1;
                self.pending = 1;
            }
            let Some((h, next)) = head(buf, self.at)? else {
                return Ok(false);
            };
            self.at = next;
            self.pending -= 1;
            if let Some(i) = self.collect {
                // `bounds` holds the start of every reply begun so far.
                if self.bounds.len() == i + 1 {
                    self.heads += 1;
                    if let Head::Bulk(Some(span)) = &h {
                        self.spans.push(span.clone());
                    }
                }
            }
            if let Head::Array(Some(n)) = h {
                self.pending = self
                    .pending
                    .checked_add(n)
                    .ok_or_else(|| bad(next, "too many elements"))?;
            }
        }
    }

    /// Where each reply starts (once [`Scanner::advance`] returned true):
    /// reply `i` is `bounds()[i]..bounds()[i + 1]`.
    pub fn bounds(&self) -> &[usize] {
        &self.bounds
    }
}

/// The spans of an array of bulk strings at `at` (a whole reply, as
/// [`Scanner`] found it): `HGETALL`'s fields and values, in order. A null
/// array is empty; anything else (an error reply, a nested value, a null
/// string) is an error naming it.
pub fn bulk_strings(buf: &[u8], at: usize) -> Result<Vec<Range<usize>>, RespError> {
    let incomplete = || bad(buf.len(), "the reply ends early");
    let (h, mut next) = head(buf, at)?.ok_or_else(incomplete)?;
    let n = match h {
        Head::Array(Some(n)) => n,
        Head::Array(None) => return Ok(Vec::new()),
        other => return Err(bad(at, format!("expected an array, got {other:?}"))),
    };
    // Each element takes at least 6 bytes ("$0\r\n\r\n"): a count cannot
    // make this allocate more than the buffer warrants.
    let mut spans = Vec::with_capacity(n.min(buf.len().saturating_sub(next) / 6));
    for _ in 0..n {
        let here = next;
        let (h, after) = head(buf, here)?.ok_or_else(incomplete)?;
        match h {
            Head::Bulk(Some(span)) => spans.push(span),
            other => return Err(bad(here, format!("expected a bulk string, got {other:?}"))),
        }
        next = after;
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk_array(items: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        for item in items {
            out.extend_from_slice(format!("${}\r\n", item.len()).as_bytes());
            out.extend_from_slice(item);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn scan(buf: &[u8], replies: usize) -> Result<Option<Vec<usize>>, RespError> {
        let mut s = Scanner::new(0, replies);
        Ok(s.advance(buf)?.then(|| s.bounds().to_vec()))
    }

    #[test]
    fn heads_of_every_type() {
        assert_eq!(head(b"+OK\r\n", 0), Ok(Some((Head::Simple(1..3), 5))));
        assert_eq!(head(b"-ERR x\r\n", 0), Ok(Some((Head::Error(1..6), 8))));
        assert_eq!(head(b":-42\r\n", 0), Ok(Some((Head::Integer(-42), 6))));
        assert_eq!(
            head(b"$3\r\nabc\r\n", 0),
            Ok(Some((Head::Bulk(Some(4..7)), 9)))
        );
        assert_eq!(
            head(b"$0\r\n\r\n", 0),
            Ok(Some((Head::Bulk(Some(4..4)), 6)))
        );
        assert_eq!(head(b"$-1\r\n", 0), Ok(Some((Head::Bulk(None), 5))));
        assert_eq!(head(b"*2\r\n", 0), Ok(Some((Head::Array(Some(2)), 4))));
        assert_eq!(head(b"*-1\r\n", 0), Ok(Some((Head::Array(None), 5))));
        // Binary payloads, CRLF inside included: the length decides.
        assert_eq!(
            head(b"$4\r\n\r\n\0\xff\r\n", 0),
            Ok(Some((Head::Bulk(Some(4..8)), 10)))
        );
    }

    #[test]
    fn incomplete_bytes_ask_for_more() {
        let whole = b"$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            assert_eq!(head(&whole[..cut], 0), Ok(None), "cut at {cut}");
        }
        let array = bulk_array(&[b"a", b"", b"\xe2\x82\xac"]);
        for cut in 0..array.len() {
            assert_eq!(scan(&array[..cut], 1), Ok(None), "cut at {cut}");
        }
        assert_eq!(scan(&array, 1), Ok(Some(vec![0, array.len()])));
    }

    #[test]
    fn malformed_replies_are_named() {
        for (bytes, what) in [
            (&b"$3\r\nabcd\r\n"[..], "longer than its length"),
            (b"$x\r\n", "not a length"),
            (b"$-2\r\n", "negative length"),
            (b"*-5\r\n", "negative count"),
            (b":1a\r\n", "not an integer"),
            (b":\r\n", "not an integer"),
            (b":99999999999999999999\r\n", "not an integer"),
            (b"+OK\rX", "CRLF"),
            (b"%1\r\n", "not RESP2"),
            (b"$99999999999999999999\r\n", "not a length"),
        ] {
            let e = head(bytes, 0).unwrap_err();
            assert!(e.reason.contains(what), "{bytes:?}: {e}");
        }
        // A huge length is refused; a huge count asks for more bytes and
        // never allocates for them.
        let e = head(b"$9223372036854775807\r\n", 0).unwrap_err();
        assert!(e.reason.contains("over 512 MB"), "{e}");
        assert_eq!(head(b"$536870912\r\n", 0), Ok(None));
        let e = bulk_strings(b"*9223372036854775807\r\n", 0).unwrap_err();
        assert!(e.reason.contains("ends early"), "{e}");
    }

    #[test]
    fn scanner_resumes_and_splits_pipelined_replies() {
        let mut buf = b":1\r\n".to_vec();
        let hash = bulk_array(&[b"3:u:1", b"1.5 {}", b"3:u:1:tab", b"1.5 {\"a\":1}"]);
        buf.extend_from_slice(&hash);
        let mut s = Scanner::new(0, 2);
        let mut done = false;
        for end in 1..=buf.len() {
            done = s.advance(&buf[..end]).unwrap();
            assert_eq!(done, end == buf.len(), "at {end}");
        }
        assert!(done);
        assert_eq!(s.bounds(), &[0, 4, buf.len()]);
        let spans = bulk_strings(&buf, 4).unwrap();
        let got: Vec<&[u8]> = spans.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(
            got,
            [&b"3:u:1"[..], b"1.5 {}", b"3:u:1:tab", b"1.5 {\"a\":1}"]
        );
    }

    #[test]
    fn collected_spans_are_those_of_a_second_pass() {
        let hash = bulk_array(&[b"f", b"", b"\r\n", b"\xff"]);
        let mut buf = b"-NOSCRIPT x\r\n".to_vec();
        buf.extend_from_slice(&hash);
        let mut s = Scanner::collecting(0, 2, 1);
        for end in 1..=buf.len() {
            s.advance(&buf[..end]).unwrap();
        }
        let start = s.bounds()[1];
        assert_eq!(
            s.bulk_strings(&buf).unwrap(),
            bulk_strings(&buf, start).unwrap()
        );
        // Other shapes: the second pass's answer, error included.
        for other in [
            &b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n"[..],
            b"*1\r\n$-1\r\n",
            b"-WRONGTYPE x\r\n",
            b"*-1\r\n",
            b":1\r\n",
        ] {
            let mut s = Scanner::collecting(0, 1, 0);
            assert!(s.advance(other).unwrap(), "{other:?}");
            assert_eq!(s.bulk_strings(other), bulk_strings(other, 0), "{other:?}");
        }
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut buf = Vec::new();
        for _ in 0..100_000 {
            buf.extend_from_slice(b"*1\r\n");
        }
        buf.extend_from_slice(b":1\r\n");
        assert_eq!(scan(&buf, 1), Ok(Some(vec![0, buf.len()])));
    }

    #[test]
    fn bulk_strings_refuses_other_shapes() {
        assert_eq!(bulk_strings(b"*-1\r\n", 0), Ok(vec![]));
        assert_eq!(bulk_strings(b"*0\r\n", 0), Ok(vec![]));
        for (bytes, what) in [
            (&b"-WRONGTYPE x\r\n"[..], "expected an array"),
            (b":3\r\n", "expected an array"),
            (b"*1\r\n$-1\r\n", "expected a bulk string"),
            (b"*1\r\n*0\r\n", "expected a bulk string"),
            (b"*1\r\n:1\r\n", "expected a bulk string"),
            (b"*2\r\n$1\r\na\r\n", "ends early"),
        ] {
            let e = bulk_strings(bytes, 0).unwrap_err();
            assert!(e.reason.contains(what), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn a_large_room_reads_whole() {
        let rows: Vec<Vec<u8>> = (0..8_000)
            .map(|i| format!("3:u:{i}|1.25 {{\"n\":\"\u{e9}{i}\"}}").into_bytes())
            .collect();
        let items: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let buf = bulk_array(&items);
        assert_eq!(scan(&buf, 1), Ok(Some(vec![0, buf.len()])));
        let spans = bulk_strings(&buf, 0).unwrap();
        assert_eq!(spans.len(), 8_000);
        assert_eq!(&buf[spans[7_999].clone()], rows[7_999].as_slice());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = head(&bytes, 0);
            let _ = bulk_strings(&bytes, 0);
            let mut s = Scanner::new(0, 2);
            let _ = s.advance(&bytes);
        }

        /// The fuzz target's invariant (fuzz/fuzz_targets/resp.rs): bytes
        /// fed in two pieces scan as they do whole, and the strings
        /// collected while scanning are those of a second pass.
        #[test]
        fn pieces_scan_as_the_whole(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..6),
            noise in proptest::collection::vec(any::<u8>(), 0..4),
            at in any::<usize>(),
            cut in any::<usize>(),
        ) {
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let mut bytes = b":1\r\n".to_vec();
            bytes.extend_from_slice(&bulk_array(&refs));
            // Sometimes damaged: a few bytes spliced in anywhere.
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, noise);
            let mut whole = Scanner::collecting(0, 2, 1);
            let done = whole.advance(&bytes);
            let mut pieces = Scanner::collecting(0, 2, 1);
            let cut = cut % (bytes.len() + 1);
            let done_in_pieces = match pieces.advance(&bytes[..cut]) {
                Ok(false) => pieces.advance(&bytes),
                other => other,
            };
            prop_assert_eq!(done.is_ok(), done_in_pieces.is_ok());
            if let (Ok(true), Ok(true)) = (&done, &done_in_pieces) {
                prop_assert_eq!(whole.bounds(), pieces.bounds());
                let start = whole.bounds()[1];
                prop_assert_eq!(whole.bulk_strings(&bytes), bulk_strings(&bytes, start));
            }
        }

        #[test]
        fn encoded_arrays_read_back(items in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 0..20)
        ) {
            let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
            let buf = bulk_array(&refs);
            prop_assert_eq!(scan(&buf, 1), Ok(Some(vec![0, buf.len()])));
            let spans = bulk_strings(&buf, 0).unwrap();
            let got: Vec<&[u8]> = spans.iter().map(|r| &buf[r.clone()]).collect();
            prop_assert_eq!(got, refs);
            let mut s = Scanner::collecting(0, 1, 0);
            prop_assert!(s.advance(&buf).unwrap());
            prop_assert_eq!(s.bulk_strings(&buf).unwrap(), spans);
        }
    }
}
