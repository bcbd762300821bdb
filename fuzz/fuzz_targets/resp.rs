//! Redis replies (RESP2) as the presence `list` reads them on its own
//! connections: no input panics, a reply fed in any two pieces scans as it
//! does whole, and the strings collected while scanning are the ones a
//! second pass finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::resp::{bulk_strings, Scanner};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = Scanner::collecting(0, 2, 1);
    let done = whole.advance(bytes);
    let mut pieces = Scanner::collecting(0, 2, 1);
    let cut = usize::from(cut).min(bytes.len());
    let first = pieces.advance(&bytes[..cut]);
    let done_in_pieces = match first {
        Ok(false) => pieces.advance(bytes),
        other => other,
    };
    assert_eq!(done.is_ok(), done_in_pieces.is_ok());
    if let (Ok(true), Ok(true)) = (&done, &done_in_pieces) {
        assert_eq!(whole.bounds(), pieces.bounds());
        let start = whole.bounds()[1];
        assert_eq!(whole.bulk_strings(bytes), bulk_strings(bytes, start));
    }
});
