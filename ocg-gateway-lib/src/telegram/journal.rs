//! The durable record of updates: what arrived, what was answered.
//!
//! One append-only file of JSON lines, mode 0600; no call returns before
//! its record is on disk (`done`s of concurrent chats share one
//! `fdatasync`, a group commit):
//!
//! - `{"recv": <update>}`: an update to answer, written (and synced) before
//!   the channel asks Telegram for the next batch, which is what
//!   acknowledges the offset, and before a webhook request is answered 200;
//! - `{"skip": id}`: an update seen that needs no answer (a chat not on the
//!   allow-list, an update without a message);
//! - `{"done": id}`: the answer to `recv` `id` was sent;
//! - `{"offset": n, "recent": [...]}`: the first line after a compaction.
//!
//! On open the file is replayed (a torn last line is ignored), rewritten
//! compactly (temporary file, fsync, rename, fsync of the directory) and
//! then appended to; it is compacted again every few thousand records.
//! Updates received but not done are answered again after a restart; done
//! ones never are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

/// Update ids remembered for deduplication.
const RECENT: usize = 10_000;
/// Records appended before the file is compacted.
const COMPACT_AFTER: usize = 5_000;

#[derive(Debug)]
struct Inner {
    file: File,
    pending: BTreeMap<i64, Value>,
    recent: BTreeSet<i64>,
    next_offset: i64,
    appended: usize,
    /// Appends so far; with `Journal::synced`, what a group commit covers.
    written: u64,
}

/// The journal of one bot (see the module docs).
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// The last append known to be on disk; held while syncing, so
    /// concurrent `done`s share one `fdatasync` (group commit).
    synced: Mutex<u64>,
}

fn update_id(update: &Value) -> Option<i64> {
    update.get("update_id")?.as_i64()
}

impl Inner {
    fn remember(&mut self, id: i64) {
        self.recent.insert(id);
        while self.recent.len() > RECENT {
            self.recent.pop_first();
        }
        self.next_offset = self.next_offset.max(id.saturating_add(1));
    }

    fn seen(&self, id: i64) -> bool {
        self.pending.contains_key(&id)
            || self.recent.contains(&id)
            || (self.recent.len() >= RECENT && self.recent.first().is_some_and(|min| id < *min))
    }
}

impl Journal {
    /// Open (or create) the journal at `path`, replaying what it holds.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut pending = BTreeMap::new();
        let mut recent = BTreeSet::new();
        let mut next_offset = 0i64;
        match File::open(path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let Ok(record) = serde_json::from_str::<Value>(&line) else {
                        // A write cut short by a crash; everything before it counts.
                        tracing::warn!(path = %path.display(), line = number + 1, "ignoring an unreadable journal line");
                        continue;
                    };
                    if let Some(offset) = record.get("offset").and_then(Value::as_i64) {
                        next_offset = next_offset.max(offset);
                        for id in record["recent"].as_array().into_iter().flatten() {
                            if let Some(id) = id.as_i64() {
                                recent.insert(id);
                            }
                        }
                    } else if let Some(update) = record.get("recv") {
                        if let Some(id) = update_id(update) {
                            pending.insert(id, update.clone());
                            recent.insert(id);
                            next_offset = next_offset.max(id.saturating_add(1));
                        }
                    } else if let Some(id) = record
                        .get("done")
                        .or_else(|| record.get("skip"))
                        .and_then(Value::as_i64)
                    {
                        pending.remove(&id);
                        recent.insert(id);
                        next_offset = next_offset.max(id.saturating_add(1));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        while recent.len() > RECENT {
            recent.pop_first();
        }
        let file = Self::rewrite(path, next_offset, &recent, &pending)?;
        Ok(Journal {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                file,
                pending,
                recent,
                next_offset,
                appended: 0,
                written: 0,
            }),
            synced: Mutex::new(0),
        })
    }

    /// Write the state compactly to a new file and put it in place; returns
    /// the new file opened for appending.
    fn rewrite(
        path: &Path,
        next_offset: i64,
        recent: &BTreeSet<i64>,
        pending: &BTreeMap<i64, Value>,
    ) -> std::io::Result<File> {
        let temporary = path.with_extension("tmp");
        let _ = std::fs::remove_file(&temporary);
        let mut out = String::new();
        out.push_str(&json!({"offset": next_offset, "recent": recent}).to_string());
        out.push('\n');
        for update in pending.values() {
            out.push_str(&json!({ "recv": update }).to_string());
            out.push('\n');
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(out.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        // The file just renamed into place: `create_new` above refused to
        // follow a planted symlink, so this is the regular file written.
        OpenOptions::new().append(true).open(path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write `lines` (not yet synced); returns the append's number.
    fn write(&self, inner: &mut Inner, lines: &str) -> std::io::Result<u64> {
        inner.file.write_all(lines.as_bytes())?;
        inner.written += 1;
        inner.appended += lines.lines().count();
        if inner.appended >= COMPACT_AFTER {
            // The rewrite is synced: everything written so far is on disk.
            inner.file =
                Self::rewrite(&self.path, inner.next_offset, &inner.recent, &inner.pending)?;
            inner.appended = 0;
        }
        Ok(inner.written)
    }

    /// Write `lines` and sync them before the lock is released.
    fn append(&self, inner: &mut Inner, lines: &str) -> std::io::Result<()> {
        self.write(inner, lines)?;
        inner.file.sync_data()
    }

    /// Make append `number` durable. Whoever syncs covers every append
    /// written before it started, so concurrent callers mostly find their
    /// append already synced and skip their own `fdatasync`.
    fn commit(&self, number: u64) -> std::io::Result<()> {
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *synced >= number {
            return Ok(());
        }
        // The current file and how far it reaches, read together: appends
        // to an older file were made durable by the compaction that
        // replaced it.
        let (upto, file) = {
            let inner = self.lock();
            (inner.written, inner.file.try_clone()?)
        };
        file.sync_data()?;
        *synced = upto;
        Ok(())
    }

    /// The offset to ask Telegram for next.
    pub(crate) fn next_offset(&self) -> i64 {
        self.lock().next_offset
    }

    /// Updates received and not answered yet, oldest first.
    pub(crate) fn pending(&self) -> Vec<Value> {
        self.lock().pending.values().cloned().collect()
    }

    /// Whether update `id` waits for an answer.
    pub(crate) fn is_pending(&self, id: i64) -> bool {
        self.lock().pending.contains_key(&id)
    }

    /// How many updates wait for an answer.
    pub(crate) fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Record a batch durably: updates to answer (`Some`) and ids to skip
    /// (`None`). Ids already seen are left out. Returns the updates newly
    /// recorded as pending, in order.
    pub(crate) fn record(&self, batch: Vec<(i64, Option<Value>)>) -> std::io::Result<Vec<Value>> {
        let mut inner = self.lock();
        let mut lines = String::new();
        let mut fresh = Vec::new();
        let mut seen_now = BTreeSet::new();
        for (id, update) in batch {
            if inner.seen(id) || !seen_now.insert(id) {
                continue;
            }
            match update {
                Some(update) => {
                    lines.push_str(&json!({ "recv": update }).to_string());
                    fresh.push((id, update));
                }
                None => lines.push_str(&json!({ "skip": id }).to_string()),
            }
            lines.push('\n');
        }
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        self.append(&mut inner, &lines)?;
        for id in seen_now {
            inner.remember(id);
        }
        let mut out = Vec::with_capacity(fresh.len());
        for (id, update) in fresh {
            inner.pending.insert(id, update.clone());
            out.push(update);
        }
        Ok(out)
    }

    /// Record that update `id` was answered.
    /// Returns once the record is on disk; concurrent calls share a sync.
    pub(crate) fn done(&self, id: i64) -> std::io::Result<()> {
        let number = {
            let mut inner = self.lock();
            if inner.pending.remove(&id).is_none() {
                return Ok(());
            }
            self.write(&mut inner, &format!("{}\n", json!({ "done": id })))?
        };
        self.commit(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: i64) -> Value {
        json!({"update_id": id, "message": {"message_id": id, "chat": {"id": 1}, "text": "hi"}})
    }

    #[test]
    fn pending_survives_reopen_and_done_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telegram/1.journal");
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.next_offset(), 0);
        let fresh = journal
            .record(vec![
                (10, Some(update(10))),
                (11, None),
                (12, Some(update(12))),
            ])
            .unwrap();
        assert_eq!(fresh.len(), 2);
        journal.done(10).unwrap();
        assert!(!journal.is_pending(10) && journal.is_pending(12));
        assert_eq!(journal.next_offset(), 13);
        drop(journal);

        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.next_offset(), 13);
        let pending = journal.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["update_id"], 12);
        // Duplicates (a retried webhook, a repeated batch) are not recorded again.
        assert!(
            journal
                .record(vec![(10, Some(update(10)))])
                .unwrap()
                .is_empty()
        );
        assert!(
            journal
                .record(vec![(12, Some(update(12)))])
                .unwrap()
                .is_empty()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn concurrent_dones_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = std::sync::Arc::new(Journal::open(&path).unwrap());
        let batch = (0..64).map(|id| (id, Some(update(id)))).collect();
        assert_eq!(journal.record(batch).unwrap().len(), 64);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for id in (t..64).step_by(8) {
                        journal.done(id).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(journal.pending_count(), 0);
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.pending_count(), 0, "every done reached the file");
        assert_eq!(journal.next_offset(), 64);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path).unwrap();
        journal.record(vec![(5, Some(update(5)))]).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"done\": 5").unwrap();
        drop(file);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.pending_count(), 1, "the torn done did not count");
        journal.done(5).unwrap();
        drop(journal);
        assert_eq!(Journal::open(&path).unwrap().pending_count(), 0);
    }

    #[test]
    fn compaction_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = Journal::open(&path).unwrap();
        for id in 0..(COMPACT_AFTER as i64 / 2 + 10) {
            journal.record(vec![(id, Some(update(id)))]).unwrap();
            if id != 7 {
                journal.done(id).unwrap();
            }
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 200_000, "compacted: {size} bytes");
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.pending().len(), 1);
        assert_eq!(journal.pending()[0]["update_id"], 7);
        assert!(
            journal
                .record(vec![(3, Some(update(3)))])
                .unwrap()
                .is_empty()
        );
    }
}
