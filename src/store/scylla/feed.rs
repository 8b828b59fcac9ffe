//! The outbox of governance events and the feed they are published to once final: publishing,
//! retracting what a rollback removed, and reading both.

use super::session::Inner;
use super::tables::{b, i, json_dec, json_enc, Val, T_OUTBOX};
use crate::domain::achievement::{FeedItem, GovernanceEvent};
use crate::store::StoreError;

/// Blocks per outbox partition.
const OUTBOX_BUCKET: u64 = 100_000;
/// Feed items per feed partition.
const FEED_BUCKET: u64 = 100_000;
/// The name of the feed state row.
const FEED: &str = "feed";

/// The outbox partition of a block's events.
pub(super) fn outbox_bucket(block: u64) -> i64 {
    i(block / OUTBOX_BUCKET)
}

/// The block of an event key (it starts with the block number, big-endian).
fn event_block(key: &[u8]) -> u64 {
    key.get(..8).and_then(|k| k.try_into().ok()).map_or(0, u64::from_be_bytes)
}

impl Inner {
    /// The feed's last sequence number and the last block published.
    pub(super) async fn feed_state(&self) -> Result<(u64, Option<u64>), StoreError> {
        let r = self.one::<(Option<i64>, Option<i64>)>(&self.st.feed_state_get, (FEED,)).await?;
        Ok(r.map_or((0, None), |(s, p)| (s.unwrap_or(0) as u64, p.map(|p| p as u64))))
    }

    /// Publishes the outbox events of committed blocks up to `finalized` to the feed.
    pub(super) async fn publish_final(&self, finalized: u64) -> Result<Vec<FeedItem>, StoreError> {
        // Final blocks not committed yet are published once they are.
        let cur = self.cursor_row().await?;
        let Some(c) = cur.cursor else { return Ok(vec![]) };
        let finalized = finalized.min(c.block);
        let (mut seq, through) = self.feed_state().await?;
        if through.is_some_and(|t| t >= finalized) {
            return Ok(vec![]);
        }
        let first = match through {
            Some(t) => t + 1,
            None => cur.first_block.unwrap_or(0),
        };
        if first > finalized {
            return Ok(vec![]);
        }
        let lo = (first.saturating_sub(1)).to_be_bytes().to_vec();
        let lo = if first == 0 { vec![] } else { [lo.as_slice(), &[0xff; 32]].concat() };
        let hi = finalized.saturating_add(1).to_be_bytes().to_vec();
        let mut out = Vec::new();
        for bucket in outbox_bucket(first)..=outbox_bucket(finalized) {
            let rows: Vec<(Vec<u8>, Option<String>)> = self.all(&self.st.outbox_range, (bucket, lo.clone(), hi.clone())).await?;
            for (k, body) in rows {
                let body = body.unwrap_or_default();
                let event: GovernanceEvent = json_dec("outbox", &body)?;
                seq += 1;
                let item = FeedItem { seq, item_type: "event".into(), event };
                self.exec(&self.st.feed_put, (i(seq / FEED_BUCKET), i(seq), json_enc("governance_feed", &item)?)).await?;
                self.exec(&self.st.published_put, (outbox_bucket(event_block(&k)), k, body)).await?;
                out.push(item);
            }
        }
        self.exec(&self.st.feed_state_set, (FEED, i(seq), i(finalized))).await?;
        Ok(out)
    }

    /// After a rollback to `target`: published events of later blocks that the rollback
    /// removed (or replaced) are retracted on the feed, and publishing resumes from `target`.
    pub(super) async fn retract_orphans(&self, target: u64) -> Result<(), StoreError> {
        let (mut seq, through) = self.feed_state().await?;
        let Some(through) = through else { return Ok(()) };
        if through <= target {
            return Ok(());
        }
        let from_key = (target + 1).to_be_bytes().to_vec();
        for bucket in outbox_bucket(target + 1)..=outbox_bucket(through) {
            let rows: Vec<(Vec<u8>, Option<String>)> = self.all(&self.st.published_after, (bucket, from_key.clone())).await?;
            for (k, body) in rows {
                let body = body.unwrap_or_default();
                let still = self.select_row(T_OUTBOX, &vec![Val::I(bucket), b(&k)]).await?;
                if matches!(still.as_ref().and_then(|v| v.first()), Some(Some(Val::S(s))) if *s == body) {
                    continue;
                }
                let event: GovernanceEvent = json_dec("published_events", &body)?;
                seq += 1;
                let item = FeedItem { seq, item_type: "retraction".into(), event };
                self.exec(&self.st.feed_put, (i(seq / FEED_BUCKET), i(seq), json_enc("governance_feed", &item)?)).await?;
                self.exec(&self.st.published_delete, (bucket, k)).await?;
            }
        }
        self.exec(&self.st.feed_state_set, (FEED, i(seq), i(target))).await?;
        Ok(())
    }

    /// Up to `limit` feed items after sequence number `after`.
    pub(super) async fn feed(&self, after: u64, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let (last, _) = self.feed_state().await?;
        let mut out = Vec::new();
        let mut bucket = (after + 1) / FEED_BUCKET;
        while out.len() < limit && bucket <= last / FEED_BUCKET {
            let rows: Vec<(i64, Option<String>)> = self.all(&self.st.feed_from, (i(bucket), i(after), (limit - out.len()) as i32)).await?;
            for (_, body) in rows {
                out.push(json_dec("feed", &body.unwrap_or_default())?);
            }
            bucket += 1;
        }
        Ok(out)
    }

    /// An account's achievement events, each with whether it is published.
    pub(super) async fn account_events(&self, account: Vec<u8>) -> Result<Vec<(GovernanceEvent, bool)>, StoreError> {
        let keys: Vec<(Vec<u8>,)> = self.all(&self.st.outbox_by_account, (account,)).await?;
        let mut out = Vec::new();
        for (k,) in keys {
            let bucket = outbox_bucket(event_block(&k));
            let Some(v) = self.select_row(T_OUTBOX, &vec![Val::I(bucket), b(&k)]).await? else { continue };
            let Some(Some(Val::S(body))) = v.into_iter().next() else { continue };
            let e: GovernanceEvent = json_dec("outbox", &body)?;
            let published = self.one::<(Option<String>,)>(&self.st.published_get, (bucket, k)).await?.is_some();
            out.push((e, published));
        }
        Ok(out)
    }
}
