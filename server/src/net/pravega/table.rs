//! Pravega table segments on Nadi's store: small versioned key-value tables (the Pravega
//! client keeps a reader group's state in one, `scope/<group>_kvtable/0.#epoch.0`).
//!
//! A table is an ordinary segment of its container, so it is exactly as durable (and, in a
//! replicated container, as replicated) as any stream data. Each put or remove is one event
//! of the segment (Nadi framing, so `nadi read` shows them):
//!
//! ```text
//! +-----------+------------------+-----------+--------------------------+
//! | op: u8    | key_len: u32 BE  | key       | value (the rest; put only) |
//! +-----------+------------------+-----------+--------------------------+
//!   1 put, 2 remove
//! ```
//!
//! A key's version is the segment offset of the event that last put it, as in Pravega: unique
//! across the table, increasing, never reused after a remove. A batch is one conditional
//! append (expected length = the length the in-memory index reflects), so it is applied all or
//! nothing and a write that reached the segment some other way (another process that led the
//! container) is noticed: the index is read again from the segment and the batch re-checked.
//!
//! Invariants: the index of a table equals the fold of its segment's events from its start up
//! to `length`; every batch's conditions are checked against the state before the batch (the
//! client puts one key several times in one batch); removes are not reported by delta reads.
//!
//! Owns: [`Tables`]. Calls: `crate::store`, `crate::container`. Called by: the wire front end.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use nadi_proto::framing;

use crate::error::StoreError;
use crate::store::SegmentStore;

/// An unconditional update or remove (`KEY_NO_VERSION`).
pub const NO_VERSION: i64 = i64::MIN;
/// The key must not exist (`KEY_NOT_EXISTS`).
pub const NOT_EXISTS: i64 = -1;
/// Longest key, as Pravega (8 KiB).
pub const MAX_KEY_LEN: usize = 8 * 1024;
/// Longest value, as Pravega (1 MiB).
pub const MAX_VALUE_LEN: usize = 1024 * 1024;
/// Most entries in one batch.
pub const MAX_BATCH_ENTRIES: usize = 10_000;

const PUT: u8 = 1;
const REMOVE: u8 = 2;
/// How often a batch is re-checked after the segment changed under it.
const TRIES: usize = 4;

/// Why a table operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A key expected at a version does not exist.
    #[error("a key expected at version {expected} does not exist")]
    KeyDoesNotExist { expected: i64 },
    /// A key exists at another version than expected (or exists when it must not).
    #[error("a key is at version {actual}, not the expected {expected}")]
    BadVersion { expected: i64, actual: i64 },
    /// A key or value over the limits, or too many entries.
    #[error("{0}")]
    TooLarge(String),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One entry as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Bytes,
    pub value: Bytes,
    pub version: i64,
}

#[derive(Debug, Default)]
struct Index {
    /// The segment length this index reflects.
    length: u64,
    /// Live keys: version and value.
    keys: HashMap<Bytes, (i64, Bytes)>,
}

/// The tables of one store, their indexes loaded on first use.
#[derive(Debug)]
pub struct Tables {
    store: Arc<SegmentStore>,
    open: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Index>>>>>,
}

impl Tables {
    pub fn new(store: Arc<SegmentStore>) -> Tables {
        Tables { store, open: Default::default() }
    }

    fn slot(&self, name: &str) -> Arc<tokio::sync::Mutex<Option<Index>>> {
        self.open.lock().entry(name.to_owned()).or_default().clone()
    }

    /// Creates the table; `Ok(false)` if it exists.
    pub async fn create(&self, name: &str) -> Result<bool, StoreError> {
        let slot = self.slot(name);
        let mut index = slot.lock().await;
        let created = self.store.container(name).create(name).await?;
        if created {
            *index = Some(Index::default());
        }
        Ok(created)
    }

    /// Deletes the table (`must_be_empty`: only if it holds no key).
    pub async fn delete(&self, name: &str, must_be_empty: bool) -> Result<bool, TableError> {
        let slot = self.slot(name);
        let mut index = slot.lock().await;
        if must_be_empty {
            let current = self.current(name, &mut index).await?;
            if !current.keys.is_empty() {
                return Ok(false);
            }
        }
        let res = self.store.container(name).delete(name).await;
        *index = None;
        self.open.lock().remove(name);
        res?;
        Ok(true)
    }

    /// The index of `name`, read again from the segment if it changed.
    async fn current<'a>(&self, name: &str, index: &'a mut Option<Index>) -> Result<&'a mut Index, StoreError> {
        let info = self.store.container(name).info(name)?;
        if index.as_ref().is_none_or(|i| i.length != info.length) {
            *index = Some(self.load(name, info.start_offset, info.length).await?);
        }
        Ok(index.as_mut().expect("loaded above"))
    }

    /// Folds the table's events from `start` to `length`.
    async fn load(&self, name: &str, start: u64, length: u64) -> Result<Index, StoreError> {
        let container = self.store.container(name);
        let mut index = Index { length, keys: HashMap::new() };
        let mut at = start;
        let mut held = None;
        while at < length {
            let chunk = container.read_holding(name, at, 1024 * 1024, &mut held).await?;
            if chunk.data.is_empty() {
                break;
            }
            for event in framing::events(&chunk.data) {
                let corrupt = |what: &str| StoreError::Corrupt {
                    container: container.id(),
                    detail: format!("table segment {name}: bad entry after offset {at}: {what}"),
                };
                let (pos, payload) = event.map_err(|e| corrupt(&e.to_string()))?;
                let offset = at + pos as u64;
                let (op, key, value) = decode(&payload).ok_or_else(|| corrupt("is not a table entry"))?;
                match op {
                    PUT => index.keys.insert(key, (offset as i64, value)),
                    _ => index.keys.remove(&key),
                };
            }
            at += chunk.data.len() as u64;
        }
        Ok(index)
    }

    /// Puts `entries` (key, value, expected version) as one atomic batch; returns each entry's
    /// new version, in order.
    pub async fn update(&self, name: &str, entries: &[Entry]) -> Result<Vec<i64>, TableError> {
        if entries.len() > MAX_BATCH_ENTRIES {
            return Err(TableError::TooLarge(format!(
                "{} entries in one batch, over {MAX_BATCH_ENTRIES}",
                entries.len()
            )));
        }
        for e in entries {
            check_sizes(&e.key, Some(&e.value))?;
        }
        self.write(name, entries, PUT).await
    }

    /// Removes `keys` (key, expected version) as one atomic batch. Removing an absent key
    /// succeeds, conditional or not (Pravega answers `TableKeyDoesNotExist` to a conditional
    /// one; its client then retries forever, since removes are never reported to it).
    pub async fn remove(&self, name: &str, keys: &[Entry]) -> Result<(), TableError> {
        if keys.len() > MAX_BATCH_ENTRIES {
            return Err(TableError::TooLarge(format!("{} keys in one batch, over {MAX_BATCH_ENTRIES}", keys.len())));
        }
        for e in keys {
            check_sizes(&e.key, None)?;
        }
        self.write(name, keys, REMOVE).await.map(drop)
    }

    async fn write(&self, name: &str, entries: &[Entry], op: u8) -> Result<Vec<i64>, TableError> {
        let slot = self.slot(name);
        let mut guard = slot.lock().await;
        let container = self.store.container(name);
        for _ in 0..TRIES {
            let index = self.current(name, &mut guard).await?;
            // Every condition against the state before the batch; a key expected at a version
            // but absent is reported before a version mismatch (as Pravega does).
            let mut live = Vec::with_capacity(entries.len());
            let mut mismatch = None;
            for e in entries {
                let actual = index.keys.get(&e.key).map(|(v, _)| *v);
                match (e.version, actual) {
                    (NO_VERSION, _) | (NOT_EXISTS, None) => {}
                    (expected, None) if op == PUT => return Err(TableError::KeyDoesNotExist { expected }),
                    (_, None) => {}
                    (expected, Some(actual)) if expected != actual => {
                        mismatch.get_or_insert(TableError::BadVersion { expected, actual });
                    }
                    _ => {}
                }
                live.push(actual.is_some());
            }
            if let Some(e) = mismatch {
                return Err(e);
            }
            let mut data = BytesMut::new();
            let mut offsets = Vec::with_capacity(entries.len());
            let mut count = 0u32;
            for (e, exists) in entries.iter().zip(&live) {
                if op == REMOVE && !exists {
                    offsets.push(-1);
                    continue;
                }
                offsets.push((index.length + data.len() as u64) as i64);
                let payload = encode(op, &e.key, &e.value);
                framing::put_event(&mut data, &payload).map_err(|e| TableError::TooLarge(e.to_string()))?;
                count += 1;
            }
            if count == 0 {
                return Ok(offsets);
            }
            match container.conditional_append(name, index.length, count, data.freeze()).await {
                Ok(ack) => {
                    for (e, &version) in entries.iter().zip(&offsets) {
                        if op == PUT {
                            index.keys.insert(e.key.clone(), (version, e.value.clone()));
                        } else {
                            index.keys.remove(&e.key);
                        }
                    }
                    index.length = ack.segment_length;
                    return Ok(offsets);
                }
                // Written to meanwhile from elsewhere: read it again and re-check.
                Err(StoreError::OffsetMismatch { .. }) => *guard = None,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable(format!("table segment {name} kept changing under a batch; retry")).into())
    }

    /// The live entry of each key, in order; an absent key as version −1 and an empty value.
    pub async fn get(&self, name: &str, keys: &[Bytes]) -> Result<Vec<Entry>, StoreError> {
        let slot = self.slot(name);
        let mut guard = slot.lock().await;
        let index = self.current(name, &mut guard).await?;
        Ok(keys
            .iter()
            .map(|k| match index.keys.get(k) {
                Some((version, value)) => Entry { key: k.clone(), value: value.clone(), version: *version },
                None => Entry { key: k.clone(), value: Bytes::new(), version: NOT_EXISTS },
            })
            .collect())
    }

    /// Up to `max` live entries whose version is at least `from`, in version order, and the
    /// position after the last one (`from` if none).
    pub async fn since(&self, name: &str, from: i64, max: usize) -> Result<(Vec<Entry>, i64), StoreError> {
        let slot = self.slot(name);
        let mut guard = slot.lock().await;
        let index = self.current(name, &mut guard).await?;
        let mut found: Vec<Entry> = index
            .keys
            .iter()
            .filter(|(_, (v, _))| *v >= from)
            .map(|(k, (v, value))| Entry { key: k.clone(), value: value.clone(), version: *v })
            .collect();
        found.sort_by_key(|e| e.version);
        found.truncate(max.clamp(1, 10_000));
        let next = found.last().map_or(from, |e| e.version + 1);
        Ok((found, next))
    }
}

fn check_sizes(key: &Bytes, value: Option<&Bytes>) -> Result<(), TableError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(TableError::TooLarge(format!("a table key must be 1..={MAX_KEY_LEN} bytes, not {}", key.len())));
    }
    if let Some(v) = value.filter(|v| v.len() > MAX_VALUE_LEN) {
        return Err(TableError::TooLarge(format!(
            "a table value must be at most {MAX_VALUE_LEN} bytes, not {}",
            v.len()
        )));
    }
    Ok(())
}

fn encode(op: u8, key: &[u8], value: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + key.len() + value.len());
    b.put_u8(op);
    b.put_u32(key.len() as u32);
    b.put_slice(key);
    if op == PUT {
        b.put_slice(value);
    }
    b.freeze()
}

fn decode(payload: &Bytes) -> Option<(u8, Bytes, Bytes)> {
    let op = *payload.first()?;
    let len = u32::from_be_bytes(payload.get(1..5)?.try_into().ok()?) as usize;
    let key = payload.slice(5..5usize.checked_add(len).filter(|&end| end <= payload.len())?);
    let value = payload.slice(5 + len..);
    match op {
        PUT => Some((op, key, value)),
        REMOVE if value.is_empty() => Some((op, key, value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerOptions;
    use crate::store::StoreConfig;

    #[test]
    fn entries_decode_as_encoded_and_garbage_does_not() {
        let put = encode(PUT, b"k", b"value");
        assert_eq!(decode(&put), Some((PUT, Bytes::from_static(b"k"), Bytes::from_static(b"value"))));
        let rm = encode(REMOVE, b"key", b"ignored");
        assert_eq!(decode(&rm), Some((REMOVE, Bytes::from_static(b"key"), Bytes::new())));
        for bad in [&b""[..], &[1], &[1, 0, 0, 0, 9, b'a'], &[3, 0, 0, 0, 0], &[2, 0, 0, 0, 0, b'x']] {
            assert_eq!(decode(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    fn open(dir: &std::path::Path) -> Arc<SegmentStore> {
        let cfg = StoreConfig { dir: dir.to_owned(), containers: 2, container: ContainerOptions::default() };
        Arc::new(SegmentStore::open(&cfg).unwrap())
    }

    fn put(key: &str, value: &str, version: i64) -> Entry {
        Entry { key: Bytes::copy_from_slice(key.as_bytes()), value: Bytes::copy_from_slice(value.as_bytes()), version }
    }

    fn key(k: &str) -> Bytes {
        Bytes::copy_from_slice(k.as_bytes())
    }

    /// The conditions the Pravega client's synchronizer relies on, batches all or nothing,
    /// versions unique and increasing, delta reads, and the index read back from the segment
    /// by a store opened again.
    #[tokio::test]
    async fn batches_are_conditional_atomic_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = "sc/rg_kvtable/0.#epoch.0";
        let (a_version, b_version, c_version) = {
            let store = open(dir.path());
            let tables = Tables::new(store.clone());
            assert!(tables.create(t).await.unwrap());
            assert!(!tables.create(t).await.unwrap(), "created twice");
            // The same absent key twice with -1 in one batch: checked against the state before.
            let v = tables
                .update(t, &[put("a", "1", NOT_EXISTS), put("a", "2", NOT_EXISTS), put("b", "x", NO_VERSION)])
                .await
                .unwrap();
            assert_eq!(v.len(), 3);
            assert!(v[0] >= 0 && v[0] < v[1] && v[1] < v[2], "unique, increasing: {v:?}");
            let (a, b) = (v[1], v[2]);
            // Failures change nothing: a bad version anywhere in a batch, a key that is absent.
            let before = store.container(t).info(t).unwrap().length;
            let e = tables.update(t, &[put("c", "new", NO_VERSION), put("a", "3", a + 1)]).await.unwrap_err();
            assert!(matches!(e, TableError::BadVersion { .. }), "{e:?}");
            let e = tables.update(t, &[put("a", "3", a + 1), put("zz", "3", 5)]).await.unwrap_err();
            assert!(matches!(e, TableError::KeyDoesNotExist { .. }), "absence wins over a mismatch: {e:?}");
            let e = tables.update(t, &[put("b", "y", NOT_EXISTS)]).await.unwrap_err();
            assert!(matches!(e, TableError::BadVersion { .. }), "{e:?}");
            assert_eq!(store.container(t).info(t).unwrap().length, before, "refused batches wrote nothing");
            let got = tables.get(t, &[key("a"), key("c")]).await.unwrap();
            assert_eq!(got, vec![put("a", "2", a), Entry { key: key("c"), value: Bytes::new(), version: NOT_EXISTS }]);
            // The right version: a new, higher one.
            let c = tables.update(t, &[put("a", "3", a), put("c", "z", NOT_EXISTS)]).await.unwrap();
            assert!(c[0] > b && c[1] > c[0], "{c:?}");
            // Removes: conditional, an absent key is fine, a wrong version is not.
            let e = tables.remove(t, &[put("b", "", a)]).await.unwrap_err();
            assert!(matches!(e, TableError::BadVersion { .. }), "{e:?}");
            tables.remove(t, &[put("b", "", b), put("never", "", 7)]).await.unwrap();
            // Deltas: live entries from a position on, in version order, not removed ones.
            let (all, next) = tables.since(t, 0, 100).await.unwrap();
            assert_eq!(all, vec![put("a", "3", c[0]), put("c", "z", c[1])]);
            assert_eq!(tables.since(t, next, 100).await.unwrap().0, vec![], "caught up: empty");
            let (first, after) = tables.since(t, 0, 1).await.unwrap();
            assert_eq!(first, vec![put("a", "3", c[0])]);
            assert_eq!(tables.since(t, after, 10).await.unwrap().0, vec![put("c", "z", c[1])]);
            (c[0], b, c[1])
        };
        // A store opened again reads the same table back from its segment.
        let store = open(dir.path());
        let tables = Tables::new(store);
        let got = tables.get(t, &[key("a"), key("b"), key("c")]).await.unwrap();
        assert_eq!(got[0], put("a", "3", a_version));
        assert_eq!(got[1].version, NOT_EXISTS, "b was removed (its version was {b_version})");
        assert_eq!(got[2], put("c", "z", c_version));
        let v = tables.update(t, &[put("a", "4", a_version)]).await.unwrap();
        assert!(v[0] > c_version, "versions keep increasing after a restart");
        assert!(tables.delete(t, false).await.unwrap());
        assert!(matches!(tables.since(t, 0, 1).await, Err(StoreError::SegmentNotFound(_))));
    }
}
