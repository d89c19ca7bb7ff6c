//! Readings written straight to the database as if each had arrived when it was sent: a
//! history the hub never heard live (a simulated city's last days, for a demonstration).
//!
//! Every message goes through the same decoding as a live one ([`take_message`]) and the
//! same write path (binary COPY, rollup marks, the latest state), but not through the
//! broker, and the rules never see it: a history opens no outage. What the live path would
//! refuse is counted and left out, with no dead letter.

use model::{Limits, Timestamp};
use store::{Ingestion, ReadingBatch, StoreError};

use crate::intake::take_message;
use crate::Registry;

/// Rows written per transaction.
const BATCH_ROWS: usize = 50_000;

pub struct Backfill {
    db: Ingestion,
    registry: Registry,
    limits: Limits,
    batch: ReadingBatch,
    /// Readings written so far.
    pub written: u64,
    /// Messages the live path would have refused.
    pub refused: u64,
}

impl Backfill {
    /// A backfill through `db`, resolving topics against the devices imported there.
    pub async fn new(db: Ingestion, limits: Limits) -> Result<Backfill, StoreError> {
        let registry = Registry::default();
        let (devices, _) = db.devices_changed_since(None).await?;
        registry.insert_all(devices);
        Ok(Backfill {
            db,
            registry,
            limits,
            batch: ReadingBatch::default(),
            written: 0,
            refused: 0,
        })
    }

    /// Takes one message as received at `at` (its rows stamped later than `at` are heard
    /// at `at`, as live), writing the rows gathered so far when there are enough of them.
    pub async fn take(
        &mut self,
        topic: &str,
        payload: &[u8],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let intake = take_message(
            &mut self.batch,
            &self.registry,
            &self.limits,
            topic,
            payload,
            at,
            0,
            &mut |_, _| 0,
        );
        if intake.refused() > 0 {
            self.refused += 1;
        }
        if self.batch.reading_rows() >= BATCH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what is gathered, with the latest state of each device it touched.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        let outcome = self.db.write_batch(&batch).await?;
        self.written += outcome.inserted.iter().sum::<u64>();
        self.db.upsert_latest(&batch.take_latest()).await
    }

    /// Writes the rest; the number of readings written.
    pub async fn finish(mut self) -> Result<u64, StoreError> {
        self.flush().await?;
        Ok(self.written)
    }
}
