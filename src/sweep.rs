//! The round robin the in-memory stores clean by: every `every` operations a
//! thread is handed the next shard to sweep, so shards without traffic are
//! cleaned too, without a background thread or a scan of all shards.

use std::cell::Cell;
use std::thread::LocalKey;

/// One per store and thread: (operations since the last turn, next shard).
pub type Turn = Cell<(u32, u32)>;

/// The shard this operation should sweep, if it is the thread's turn.
pub fn next_shard(turn: &'static LocalKey<Turn>, every: u32, shards: usize) -> Option<usize> {
    turn.with(|cell| {
        let (ops, next) = cell.get();
        if ops + 1 < every {
            cell.set((ops + 1, next));
            None
        } else {
            cell.set((0, next.wrapping_add(1)));
            Some(next as usize % shards)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TURN: Turn = const { Cell::new((0, 0)) };
    }

    #[test]
    fn every_nth_operation_gets_the_next_shard_in_turn() {
        let turns: Vec<Option<usize>> = (0..12).map(|_| next_shard(&TURN, 3, 2)).collect();
        let n = None;
        assert_eq!(
            turns,
            [n, n, Some(0), n, n, Some(1), n, n, Some(0), n, n, Some(1)]
        );
    }
}
