//! The audit log: every change people and programs make, in a hash chain.
//!
//! Entry n stores `hash = SHA-256(prev_hash || canonical(n))`, where `prev_hash` is entry
//! n-1's hash (nothing for the first entry) and `canonical` is [`canonical_bytes`] of its
//! fields. Editing an entry changes its hash; deleting one leaves a gap in the ids and a
//! `prev_hash` that matches nothing; reordering breaks both. [`Db::verify_audit`]
//! recomputes the chain and names the first entry that does not fit.
//!
//! Appends are serialized by a transaction-scoped advisory lock, and the id is the
//! previous id + 1 taken under it, so the chain never forks and has no gaps of its own.
//! A change and its audit entry are written in one transaction ([`append`]): there is
//! never a change without its entry, nor an entry for a change that was rolled back.
//!
//! What the chain cannot show alone: the newest entries removed from the end. Keep a copy
//! of the last hash elsewhere (`cityhub audit verify` prints it) to detect that too.

use crate::handles::{Actions, Admin};
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::{GenericClient, Row, Transaction};

use crate::StoreError;

/// The advisory lock key that serializes appends ("audit" in ASCII).
const APPEND_LOCK: i64 = 0x61_75_64_69_74;

/// Entries read per query while verifying: bounded memory whatever the log's size.
const VERIFY_PAGE: i64 = 5_000;

/// What to record: who did what to which thing, with the particulars.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// A user name, `user (token name)` for an API token, or `cli` for the command line.
    pub actor: String,
    /// A dotted verb, e.g. `outage.acknowledge`, `work_order.transition`, `user.add`.
    pub action: String,
    /// The thing acted on, e.g. `outage/42`, `work_order/7`, `user/olga`.
    pub target: String,
    /// The particulars, as a JSON object.
    pub detail: serde_json::Value,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub entry: AuditEntry,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Entries read.
    pub entries: u64,
    /// The first entry that does not fit, and why, in words.
    pub first_bad: Option<(i64, String)>,
    /// The hash of the last entry (hex), to keep elsewhere: it pins the end of the log.
    pub last_hash: Option<String>,
}

/// A point of the chain kept outside the database: an entry's id and its hash. The
/// chain must still reach it, with that hash: removing the newest entries, or rewriting
/// and re-chaining the log, cannot keep an anchor taken before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    pub id: i64,
    pub hash: Vec<u8>,
}

impl AuditAnchor {
    /// `SEQ:HASH` (the entry's id, its hash in hex), as `cityhub audit anchor` prints it.
    pub fn parse(text: &str) -> Result<AuditAnchor, String> {
        let (id, hash) = text.trim().split_once(':').ok_or_else(|| {
            format!("`{text}` is not SEQ:HASH (an entry's id, a colon, its hash in hex)")
        })?;
        let id: i64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("`{id}` is not an entry's id"))?;
        let hash = (0..hash.len())
            .step_by(2)
            .map(|i| {
                hash.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .filter(|h| h.len() == 32)
            .ok_or_else(|| format!("`{hash}` is not a SHA-256 in hex (64 characters)"))?;
        Ok(AuditAnchor { id, hash })
    }
}

impl std::fmt::Display for AuditAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.id, hex(&self.hash))
    }
}

/// The bytes an entry's hash covers, after the previous hash: the id (8 bytes, big
/// endian), then each of `at` (RFC 3339, UTC, microseconds, `Z`), actor, action, target
/// and detail (JSON, object keys sorted, no spaces) as a 4-byte big-endian length and its
/// UTF-8 bytes. Lengths keep fields from running into each other ("ab"+"c" vs "a"+"bc").
pub fn canonical_bytes(id: i64, at: DateTime<Utc>, entry: &AuditEntry) -> Vec<u8> {
    let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let detail = canonical_json(&entry.detail);
    let fields = [
        at.as_str(),
        &entry.actor,
        &entry.action,
        &entry.target,
        &detail,
    ];
    let mut out = Vec::with_capacity(8 + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    out.extend_from_slice(&id.to_be_bytes());
    for field in fields {
        // A field over 4 GiB cannot be stored in PostgreSQL text; saturate rather than wrap.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// The hash of an entry that follows `prev_hash`.
pub fn entry_hash(
    prev_hash: Option<&[u8]>,
    id: i64,
    at: DateTime<Utc>,
    entry: &AuditEntry,
) -> Vec<u8> {
    let mut h = Sha256::new();
    if let Some(prev) = prev_hash {
        h.update(prev);
    }
    h.update(canonical_bytes(id, at, entry));
    h.finalize().to_vec()
}

/// JSON with every object's keys sorted and no whitespace, whatever order the keys were
/// built or stored in (jsonb reorders them).
fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map keeps insertion order only with `preserve_order`; inserting in
    // sorted order gives sorted output either way.
    sorted(v).to_string()
}

/// Appends an entry inside the caller's transaction; returns its id. The lock is held
/// until that transaction ends, so entries are chained in commit order.
pub(crate) async fn append(tx: &Transaction<'_>, entry: &AuditEntry) -> Result<i64, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await
        .map_err(StoreError::db("taking the audit log lock"))?;
    let last = tx
        .query_opt(
            "SELECT id, at, hash FROM audit_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(StoreError::db("reading the last audit entry"))?;
    let (prev_id, prev_at, prev_hash): (i64, Option<DateTime<Utc>>, Option<Vec<u8>>) = match &last {
        Some(r) => (r.get(0), Some(r.get(1)), Some(r.get(2))),
        None => (0, None, None),
    };
    // The wall clock now (not the transaction's start), and never before the previous
    // entry, so the log reads in time order too. PostgreSQL keeps microseconds.
    let at: DateTime<Utc> = tx
        .query_one(
            "SELECT greatest(date_trunc('microseconds', clock_timestamp()), $1::timestamptz)",
            &[&prev_at],
        )
        .await
        .map_err(StoreError::db("reading the clock"))?
        .get(0);
    let id = prev_id + 1;
    let hash = entry_hash(prev_hash.as_deref(), id, at, entry);
    tx.execute(
        "INSERT INTO audit_log (id, at, actor, action, target, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &id,
            &at,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.detail,
            &prev_hash,
            &hash,
        ],
    )
    .await
    .map_err(StoreError::db("appending to the audit log"))?;
    Ok(id)
}

fn record(r: &Row) -> AuditRecord {
    AuditRecord {
        id: r.get(0),
        at: r.get(1),
        entry: AuditEntry {
            actor: r.get(2),
            action: r.get(3),
            target: r.get(4),
            detail: r.get(5),
        },
        prev_hash: r.get(6),
        hash: r.get(7),
    }
}

const RECORD_COLUMNS: &str = "id, at, actor, action, target, detail, prev_hash, hash";

/// Follows the chain one entry at a time.
#[derive(Default)]
struct ChainWalk {
    entries: u64,
    prev: Option<(i64, Vec<u8>)>,
}

impl ChainWalk {
    /// Checks the next entry against the one before; why it does not fit, if it does not.
    fn step(&mut self, r: &AuditRecord) -> Option<String> {
        self.entries += 1;
        let expected_id = self.prev.as_ref().map_or(1, |p| p.0 + 1);
        let prev_hash = self.prev.as_ref().map(|p| p.1.as_slice());
        let why = if r.id != expected_id {
            Some(if expected_id == 1 {
                format!(
                    "the log starts at entry {}: the entries before it were deleted",
                    r.id
                )
            } else if r.id == expected_id + 1 {
                format!(
                    "it follows entry {}: entry {expected_id} was deleted",
                    expected_id - 1
                )
            } else if r.id > expected_id {
                format!(
                    "it follows entry {}: entries {expected_id} to {} were deleted",
                    expected_id - 1,
                    r.id - 1
                )
            } else {
                format!("it is out of order after entry {}", expected_id - 1)
            })
        } else if r.prev_hash.as_deref() != prev_hash {
            Some(match prev_hash {
                None => "it is the first entry but names a previous one".to_owned(),
                Some(_) => format!(
                    "its previous hash is not entry {}'s hash: entries were removed or reordered",
                    r.id - 1
                ),
            })
        } else if entry_hash(prev_hash, r.id, r.at, &r.entry) != r.hash {
            Some("its contents do not match its hash: it was edited after it was written".into())
        } else {
            None
        };
        self.prev = Some((r.id, r.hash.clone()));
        why
    }
}

impl Actions {
    /// Appends an entry in a transaction of its own (for changes that have none); returns
    /// its id.
    pub async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting an audit entry"))?;
        let id = append(
            &tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail,
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing an audit entry"))?;
        Ok(id)
    }
}

impl Admin {
    /// The newest entry, as an anchor to keep elsewhere; `None` while the log is empty.
    pub async fn audit_head(&self) -> Result<Option<AuditAnchor>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(StoreError::db("reading the audit log's head"))?;
        Ok(row.map(|r| AuditAnchor {
            id: r.get(0),
            hash: r.get(1),
        }))
    }

    /// The newest `limit` entries, oldest first, optionally only those whose target starts
    /// with `target` (e.g. `outage/42`, `user/`) or whose actor is `actor` (a user's
    /// entries include those through their API tokens, `olga (token gis-export)`).
    pub async fn audit_tail(
        &self,
        limit: i64,
        target: Option<&str>,
        actor: Option<&str>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT * FROM (
                         SELECT {RECORD_COLUMNS} FROM audit_log
                         WHERE ($2::text IS NULL OR starts_with(target, $2))
                           AND ($3::text IS NULL OR actor = $3 OR starts_with(actor, $3 || ' ('))
                         ORDER BY id DESC LIMIT $1
                     ) t ORDER BY id"
                ),
                &[&limit.max(0), &target, &actor],
            )
            .await
            .map_err(StoreError::db("reading the audit log"))?;
        Ok(rows.iter().map(record).collect())
    }

    /// Recomputes the whole chain, a page at a time, and stops at the first entry that
    /// does not fit: edited (its hash), deleted (a gap in the ids, or a previous hash that
    /// is not its predecessor's) or reordered. Each of `anchors` must be on the chain:
    /// its entry there, with its hash.
    pub async fn verify_audit(&self, anchors: &[AuditAnchor]) -> Result<AuditCheck, StoreError> {
        let mut walk = ChainWalk::default();
        let mut after = 0;
        let broken = |walk: &ChainWalk, id, why| AuditCheck {
            entries: walk.entries,
            first_bad: Some((id, why)),
            last_hash: None,
        };
        loop {
            let page = read_page(self.client(), after, VERIFY_PAGE).await?;
            for r in &page {
                if let Some(why) = walk.step(r) {
                    return Ok(broken(&walk, r.id, why));
                }
                if let Some(a) = anchors.iter().find(|a| a.id == r.id && a.hash != r.hash) {
                    return Ok(broken(
                        &walk,
                        r.id,
                        format!(
                            "its hash is {}, not the anchor's {}: the log was rewritten and chained again",
                            hex(&r.hash),
                            hex(&a.hash)
                        ),
                    ));
                }
            }
            match page.last() {
                Some(r) if page.len() as i64 == VERIFY_PAGE => after = r.id,
                _ => break,
            }
        }
        let last = walk.prev.as_ref().map_or(0, |(id, _)| *id);
        if let Some(a) = anchors.iter().filter(|a| a.id > last).min_by_key(|a| a.id) {
            return Ok(broken(
                &walk,
                a.id,
                format!(
                    "the log ends at entry {last}, before the anchor's entry {}: the newest entries were removed",
                    a.id
                ),
            ));
        }
        Ok(AuditCheck {
            entries: walk.entries,
            first_bad: None,
            last_hash: walk.prev.map(|(_, h)| hex(&h)),
        })
    }
}

async fn read_page(
    client: &impl GenericClient,
    after_id: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {RECORD_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"),
            &[&after_id, &limit],
        )
        .await
        .map_err(StoreError::db("reading the audit log"))?;
    Ok(rows.iter().map(record).collect())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(actor: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            action: "outage.acknowledge".into(),
            target: "outage/1".into(),
            detail,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A well-formed chain of `n` entries.
    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for id in 1..=n {
            let e = entry(&format!("user{id}"), json!({"n": id}));
            let t = at("2026-03-01T00:00:00Z") + chrono::Duration::seconds(id);
            let prev = out.last().map(|r| r.hash.clone());
            out.push(AuditRecord {
                id,
                at: t,
                hash: entry_hash(prev.as_deref(), id, t, &e),
                prev_hash: prev,
                entry: e,
            });
        }
        out
    }

    fn first_bad(records: &[AuditRecord]) -> Option<(i64, String)> {
        let mut walk = ChainWalk::default();
        records
            .iter()
            .find_map(|r| walk.step(r).map(|why| (r.id, why)))
    }

    #[test]
    fn anchors_read_back_as_written() {
        let a = AuditAnchor {
            id: 42,
            hash: (0..32).collect(),
        };
        assert_eq!(AuditAnchor::parse(&a.to_string()), Ok(a));
        for bad in [
            "",
            "42",
            "x:00",
            "0:00",
            "42:abc",
            &format!("42:{}", "zz".repeat(32)),
        ] {
            assert!(AuditAnchor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_canonical_form_is_fixed() {
        let bytes = canonical_bytes(
            7,
            at("2026-03-01T03:00:00.5Z"),
            &entry("olga", json!({"b": 1, "a": [{"y": 2, "x": 1}]})),
        );
        let mut expected = 7i64.to_be_bytes().to_vec();
        for f in [
            "2026-03-01T03:00:00.500000Z",
            "olga",
            "outage.acknowledge",
            "outage/1",
            r#"{"a":[{"x":1,"y":2}],"b":1}"#,
        ] {
            expected.extend_from_slice(&(f.len() as u32).to_be_bytes());
            expected.extend_from_slice(f.as_bytes());
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let t = at("2026-03-01T03:00:00Z");
        let a = entry_hash(None, 1, t, &entry("o", json!({"a": 1, "b": 2})));
        let b = entry_hash(None, 1, t, &entry("o", json!({"b": 2, "a": 1})));
        assert_eq!(a, b);
        assert_ne!(a, entry_hash(None, 1, t, &entry("o", json!({"a": 1}))));
    }

    #[test]
    fn an_intact_chain_passes() {
        assert_eq!(first_bad(&chain(5)), None);
        assert_eq!(first_bad(&[]), None);
    }

    #[test]
    fn edits_deletions_and_reordering_are_found() {
        let check = |records: Vec<AuditRecord>, id: i64, fragment: &str| {
            let (bad, why) = first_bad(&records).expect("a broken chain");
            assert_eq!(bad, id, "{why}");
            assert!(why.contains(fragment), "`{why}` should say `{fragment}`");
        };
        let mut edited = chain(5);
        edited[2].entry.actor = "mallory".into();
        check(edited, 3, "edited");

        let mut retimed = chain(5);
        retimed[1].at += chrono::Duration::microseconds(1);
        check(retimed, 2, "edited");

        let mut deleted = chain(5);
        deleted.remove(2);
        check(deleted, 4, "entry 3 was deleted");

        let mut head_gone = chain(5);
        head_gone.remove(0);
        check(head_gone, 2, "the log starts at entry 2");

        // Rows swapped and renumbered so the ids look continuous.
        let mut swapped = chain(5);
        swapped.swap(1, 2);
        swapped[1].id = 2;
        swapped[2].id = 3;
        check(swapped, 2, "previous hash");

        // A rewritten tail: entry 4 replaced with a new, self-consistent hash, but the
        // next entry still names the old one.
        let mut rewritten = chain(5);
        rewritten[3].entry.detail = json!({"n": 40});
        let prev = rewritten[2].hash.clone();
        rewritten[3].hash = entry_hash(Some(&prev), 4, rewritten[3].at, &rewritten[3].entry);
        check(rewritten, 5, "previous hash");
    }
}
