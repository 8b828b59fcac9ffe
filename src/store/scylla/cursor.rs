//! The listener cursor row (with the write in flight, `pending`) and the block headers kept
//! for reorg detection.

use super::session::Inner;
use super::tables::i;
use crate::domain::B256;
use crate::store::{BlockRecord, Cursor, StoreError};

/// The name of the cursor row.
const CURSOR: &str = "listener";
/// `pending` value of an interrupted rollback.
pub(super) const PENDING_ROLLBACK: i64 = -1;

/// The cursor row.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CursorRow {
    pub(super) cursor: Option<Cursor>,
    pub(super) events: u64,
    pub(super) first_block: Option<u64>,
    /// Set while a commit (its first block) or a rollback ([`PENDING_ROLLBACK`]) is in flight.
    pub(super) pending: Option<i64>,
}

/// A `blocks` row: number, hash, parent hash, timestamp.
pub(super) type BlockRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);

/// A `blocks` row as a header.
pub(super) fn block_record((n, h, p, t): BlockRow) -> BlockRecord {
    BlockRecord {
        number: n as u64,
        hash: B256::from_slice(&h.unwrap_or_default()).unwrap_or_default(),
        parent_hash: B256::from_slice(&p.unwrap_or_default()).unwrap_or_default(),
        timestamp: t.unwrap_or(0) as u64,
    }
}

impl Inner {
    /// The cursor row (all empty before the first commit).
    pub(super) async fn cursor_row(&self) -> Result<CursorRow, StoreError> {
        type R = (Option<i64>, Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);
        let Some((blk, hash, events, first, pending)) = self.one::<R>(&self.st.cursor_get, (CURSOR,)).await? else {
            return Ok(CursorRow::default());
        };
        let cursor = match (blk, hash) {
            (Some(n), Some(h)) => Some(Cursor { block: n as u64, hash: B256::from_slice(&h).unwrap_or_default() }),
            _ => None,
        };
        Ok(CursorRow { cursor, events: events.unwrap_or(0) as u64, first_block: first.map(|f| f as u64), pending })
    }

    /// Marks a write in flight: a commit from block `pending`, or a rollback.
    pub(super) async fn set_pending(&self, pending: i64) -> Result<(), StoreError> {
        self.exec(&self.st.cursor_pending, (pending, CURSOR)).await?;
        Ok(())
    }

    /// Writes the cursor and clears `pending`: the commit point of a commit or a rollback.
    pub(super) async fn set_cursor(&self, c: Option<Cursor>, events: u64, first: Option<u64>) -> Result<(), StoreError> {
        let (n, h) = match c {
            Some(c) => (Some(i(c.block)), Some(c.hash.0.to_vec())),
            None => (None, None),
        };
        self.exec(&self.st.cursor_set, (n, h, i(events), first.map(i), CURSOR)).await?;
        Ok(())
    }

    /// The remembered header of block `n`.
    pub(super) async fn block(&self, n: u64) -> Result<Option<BlockRecord>, StoreError> {
        Ok(self.one::<BlockRow>(&self.st.block_get, (i(n),)).await?.map(block_record))
    }

    /// Every remembered header.
    pub(super) async fn recent_blocks(&self) -> Result<Vec<BlockRecord>, StoreError> {
        let rows: Vec<BlockRow> = self.all(&self.st.blocks_all, ()).await?;
        Ok(rows.into_iter().map(block_record).collect())
    }
}
