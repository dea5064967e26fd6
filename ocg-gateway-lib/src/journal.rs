//! The channels' durable state on disk, one format for all of them:
//!
//! - [`InboundJournal`]: what arrived on a channel and whether it was
//!   answered (every channel's inbound dedupe and crash recovery);
//! - [`DeliveryJournal`]: which outgoing deliveries of the scheduler were
//!   started (sent at most once).
//!
//! Both are append-only files of JSON lines, mode 0600 in a 0700
//! directory. No call that records something returns before it is on disk.
//! At open the file is replayed (a line torn by a crash is ignored) and
//! rewritten compactly (`write_private_atomic`: temporary file, fsync,
//! rename, fsync of the directory), which also removes a torn tail before
//! anything is appended to it; it is compacted again every few thousand
//! lines.
//!
//! When the gateways share a store ([`share_journals`]), every journal is
//! kept there as well: replayed from the store at open, so whichever
//! gateway runs the channels resumes where the last one stopped, and each
//! write is made there (under the channels' lease) before it returns.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ocg_core::config::env_file::write_private_atomic;
use ocg_core::{ChannelStateStore, Fence};
use serde_json::{Value, json};

use crate::lock;

/// Keys remembered for deduplication.
const RECENT: usize = 10_000;
/// Lines appended before a file is compacted.
const COMPACT_AFTER: usize = 5_000;

/// The store every journal of this process is kept in too, when shared,
/// and the runtime its calls run on.
struct Shared {
    store: Arc<dyn ChannelStateStore>,
    fence: Fence,
    runtime: tokio::runtime::Runtime,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// How long one call of the shared store may take before the journal
/// write fails (and, with it, the message's handling).
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Keep every journal opened from now on in `store` as well: replayed
/// from it, and written to it under `fence` (the channels' lease; a write
/// fails once the lease is lost). Once per process; false when it was
/// already set.
///
/// The journals are synchronous (their callers hold a lock while a record
/// is written), so the store's calls run on a runtime of their own, with
/// one thread: give `store` a connection pool of its own too, so that a
/// journal write never waits on the threads of the runtime that waits for
/// it.
pub fn share_journals(store: Arc<dyn ChannelStateStore>, fence: Fence) -> std::io::Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ocg-journals")
        .enable_all()
        .build()?;
    Ok(SHARED
        .set(Shared {
            store,
            fence,
            runtime,
        })
        .is_ok())
}

impl Shared {
    /// Run `work` to its end on the store's runtime, from a thread of its
    /// own (so it may be called from anywhere, async code included), for
    /// at most [`STORE_TIMEOUT`].
    fn block<T: Send>(
        &self,
        work: impl std::future::Future<Output = ocg_core::Result<T>> + Send,
    ) -> std::io::Result<T> {
        let runtime = self.runtime.handle();
        let bounded = async { tokio::time::timeout(STORE_TIMEOUT, work).await };
        let outcome = std::thread::scope(|scope| scope.spawn(|| runtime.block_on(bounded)).join());
        match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(std::io::Error::other(error.to_string())),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the shared journal store did not answer in time",
            )),
            Err(_) => Err(std::io::Error::other("the shared journal store failed")),
        }
    }
}

/// Read every record of the journal file at `path` (none when it is
/// missing) into `replay`; a line torn by a crash is skipped.
fn read_file(path: &Path, mut replay: impl FnMut(Value)) -> std::io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(record) => replay(record),
            // A write cut short by a crash; everything before it counts.
            Err(_) => tracing::warn!(
                path = %path.display(),
                line = number + 1,
                "ignoring an unreadable journal line"
            ),
        }
    }
    Ok(())
}

/// The file name of the scheduler's delivery journal in a gateway's
/// `channels` directory; each channel's inbound journal is `<name>.inbound`.
pub const DELIVERIES_FILE: &str = "deliveries.journal";

/// The directories of a gateway's data dir that hold journals: Telegram's
/// own (`telegram/<bot id>.inbound`), and every other channel's and the
/// deliveries' (`channels/`).
pub const JOURNAL_DIRS: [&str; 2] = ["channels", "telegram"];

/// Every journal file under `data_dir` (see [`JOURNAL_DIRS`]) by its name
/// in a shared store, with its records: what `ocg migrate` copies into
/// PostgreSQL. Sorted by name.
pub fn read_local(data_dir: &Path) -> std::io::Result<Vec<(String, Vec<Value>)>> {
    let mut journals = Vec::new();
    for dir in JOURNAL_DIRS {
        let entries = match std::fs::read_dir(data_dir.join(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let is_journal = path.extension().is_some_and(|e| e == "inbound")
                || path.file_name().is_some_and(|n| n == DELIVERIES_FILE);
            if is_journal && path.is_file() {
                let mut records = Vec::new();
                read_file(&path, |record| records.push(record))?;
                journals.push((shared_name(&path), records));
            }
        }
    }
    journals.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(journals)
}

/// The name of the journal at `path` in the shared store.
fn shared_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// One JSON-lines file: replayed at open, appended to, replaced whole.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: File,
    /// Lines appended since the last rewrite.
    appended: usize,
    /// Appends so far; what a group commit covers.
    written: u64,
}

impl Log {
    /// Read every record of the file at `path` (none when it is missing)
    /// into `replay`.
    fn replay(path: &Path, replay: impl FnMut(Value)) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        if let Some(shared) = SHARED.get() {
            let name = shared_name(path);
            shared
                .block(shared.store.read_journal(&name))?
                .into_iter()
                .for_each(replay);
            return Ok(());
        }
        read_file(path, replay)
    }

    /// Start the file at `path` afresh with `records` (what a replay
    /// found, compactly), ready for appending.
    fn start(path: &Path, records: &[Value]) -> std::io::Result<Log> {
        Ok(Log {
            path: path.to_owned(),
            file: Self::replace_file(path, records)?,
            appended: 0,
            written: 0,
        })
    }

    fn replace_file(path: &Path, records: &[Value]) -> std::io::Result<File> {
        if let Some(shared) = SHARED.get() {
            let name = shared_name(path);
            shared.block(shared.store.replace_journal(&name, &shared.fence, records))?;
        }
        let mut out = String::new();
        for record in records {
            out.push_str(&record.to_string());
            out.push('\n');
        }
        write_private_atomic(path, out.as_bytes())?;
        // The file just renamed into place (the temporary was created with
        // `create_new`, so no planted symlink was followed).
        OpenOptions::new().append(true).open(path)
    }

    /// Append `records` (not synced yet); returns the append's number.
    fn write(&mut self, records: &[Value]) -> std::io::Result<u64> {
        let mut lines = String::new();
        for record in records {
            lines.push_str(&record.to_string());
            lines.push('\n');
        }
        if let Some(shared) = SHARED.get() {
            let name = shared_name(&self.path);
            shared.block(shared.store.append_journal(&name, &shared.fence, records))?;
        }
        self.file.write_all(lines.as_bytes())?;
        self.appended += records.len();
        self.written += 1;
        Ok(self.written)
    }

    fn due_for_compaction(&self) -> bool {
        self.appended >= COMPACT_AFTER
    }

    /// Replace the file with `records` (synced: everything written before
    /// is superseded and durable).
    fn compact(&mut self, records: &[Value]) -> std::io::Result<()> {
        self.file = Self::replace_file(&self.path, records)?;
        self.appended = 0;
        Ok(())
    }
}

/// Keys seen lately, oldest forgotten first.
#[derive(Debug, Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, key: &str, cap: usize) {
        if self.set.insert(key.to_owned()) {
            self.order.push_back(key.to_owned());
        }
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if self.set.remove(key) {
            self.order.retain(|k| k != key);
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }
}

#[derive(Debug)]
struct Inbound {
    log: Log,
    /// Messages to answer, in the order they arrived.
    pending: BTreeMap<u64, (String, Value)>,
    index: HashMap<String, u64>,
    next_seq: u64,
    recent: Recent,
    cursor: Option<String>,
}

impl Inbound {
    fn add_pending(&mut self, key: String, message: Value) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index.insert(key.clone(), seq);
        self.pending.insert(seq, (key, message));
    }

    fn remove_pending(&mut self, key: &str) -> bool {
        match self.index.remove(key) {
            Some(seq) => self.pending.remove(&seq).is_some(),
            None => false,
        }
    }

    fn snapshot(
        cursor: &Option<String>,
        recent: &Recent,
        pending: &BTreeMap<u64, (String, Value)>,
    ) -> Vec<Value> {
        let mut records = vec![json!({"cursor": cursor, "recent": recent.order})];
        records.extend(
            pending
                .values()
                .map(|(key, message)| json!({"recv": key, "msg": message})),
        );
        records
    }
}

/// A channel's record of inbound messages (see the module docs).
///
/// Each message has a key unique within its channel (Telegram's update id,
/// an IMAP UID with its UIDVALIDITY, a Matrix event id, a sequence number
/// of our own for IRC). Records:
///
/// - `{"recv": key, "msg": message}`: a message to answer;
/// - `{"skip": key}`: a message seen that needs no answer;
/// - `{"done": key}`: the answer to `key` was sent;
/// - `{"cursor": c}`: where the channel resumes reading (Telegram's
///   offset, Matrix's `next_batch`, the last IMAP UID), written with the
///   batch it covers, so the cursor never passes a message not on disk;
/// - `{"cursor": c, "recent": [keys]}`: the first line after a compaction.
///
/// Messages received but not done are handed out again after a restart
/// ([`pending`](InboundJournal::pending)); done ones never are, and keys
/// seen lately (the last 10,000) are not recorded twice.
#[derive(Debug)]
pub struct InboundJournal {
    inner: Mutex<Inbound>,
    /// The last append known to be on disk; held while syncing, so
    /// concurrent `done`s share one `fdatasync` (group commit).
    synced: Mutex<u64>,
}

impl InboundJournal {
    /// Open (or create) the journal at `path`, replaying what it holds.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut pending: BTreeMap<u64, (String, Value)> = BTreeMap::new();
        let mut index: HashMap<String, u64> = HashMap::new();
        let mut recent = Recent::default();
        let mut cursor = None;
        let mut seq = 0u64;
        Log::replay(path, |record: Value| {
            let key = |name: &str| record.get(name).and_then(Value::as_str).map(str::to_owned);
            if let Some(c) = record.get("cursor") {
                cursor = c.as_str().map(str::to_owned);
                for key in record["recent"].as_array().into_iter().flatten() {
                    if let Some(key) = key.as_str() {
                        recent.insert(key, RECENT);
                    }
                }
            } else if let Some(k) = key("recv") {
                if !index.contains_key(&k) {
                    index.insert(k.clone(), seq);
                    pending.insert(seq, (k.clone(), record["msg"].clone()));
                    seq += 1;
                }
                recent.insert(&k, RECENT);
            } else if let Some(k) = key("done").or_else(|| key("skip")) {
                if let Some(seq) = index.remove(&k) {
                    pending.remove(&seq);
                }
                recent.insert(&k, RECENT);
            }
        })?;
        let log = Log::start(path, &Inbound::snapshot(&cursor, &recent, &pending))?;
        Ok(InboundJournal {
            inner: Mutex::new(Inbound {
                log,
                pending,
                index,
                next_seq: seq,
                recent,
                cursor,
            }),
            synced: Mutex::new(0),
        })
    }

    /// Where the channel resumes reading, as last recorded.
    pub fn cursor(&self) -> Option<String> {
        lock(&self.inner).cursor.clone()
    }

    /// Messages received and not answered yet, oldest first.
    pub fn pending(&self) -> Vec<(String, Value)> {
        lock(&self.inner).pending.values().cloned().collect()
    }

    /// Whether message `key` waits for an answer.
    pub fn is_pending(&self, key: &str) -> bool {
        lock(&self.inner).index.contains_key(key)
    }

    /// Whether `key` was recorded lately (answered, skipped or pending).
    pub fn seen(&self, key: &str) -> bool {
        let inner = lock(&self.inner);
        inner.index.contains_key(key) || inner.recent.contains(key)
    }

    /// How many messages wait for an answer.
    pub fn pending_count(&self) -> usize {
        lock(&self.inner).pending.len()
    }

    /// Record a batch durably: messages to answer (`Some`) and keys to skip
    /// (`None`), and the cursor after them. Keys already seen are left
    /// out. Returns the messages newly recorded as pending, in order.
    pub fn record(
        &self,
        batch: Vec<(String, Option<Value>)>,
        cursor: Option<String>,
    ) -> std::io::Result<Vec<(String, Value)>> {
        let mut inner = lock(&self.inner);
        let mut records = Vec::new();
        let mut fresh = Vec::new();
        let mut skipped = Vec::new();
        let mut now = HashSet::new();
        for (key, message) in batch {
            if inner.index.contains_key(&key)
                || inner.recent.contains(&key)
                || !now.insert(key.clone())
            {
                continue;
            }
            match message {
                Some(message) => {
                    records.push(json!({"recv": key, "msg": message}));
                    fresh.push((key, message));
                }
                None => {
                    records.push(json!({ "skip": key }));
                    skipped.push(key);
                }
            }
        }
        let cursor = cursor.filter(|c| inner.cursor.as_ref() != Some(c));
        if let Some(cursor) = &cursor {
            records.push(json!({ "cursor": cursor }));
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        inner.log.write(&records)?;
        inner.log.file.sync_data()?;
        if cursor.is_some() {
            inner.cursor = cursor;
        }
        for key in skipped {
            inner.recent.insert(&key, RECENT);
        }
        for (key, message) in &fresh {
            inner.recent.insert(key, RECENT);
            inner.add_pending(key.clone(), message.clone());
        }
        self.compact_if_due(&mut inner)?;
        Ok(fresh)
    }

    /// Record that message `key` was answered. Returns once the record is
    /// on disk; concurrent calls share one sync.
    pub fn done(&self, key: &str) -> std::io::Result<()> {
        let number = {
            let mut inner = lock(&self.inner);
            if !inner.remove_pending(key) {
                return Ok(());
            }
            let number = inner.log.write(&[json!({ "done": key })])?;
            self.compact_if_due(&mut inner)?;
            number
        };
        self.commit(number)
    }

    fn compact_if_due(&self, inner: &mut Inbound) -> std::io::Result<()> {
        if inner.log.due_for_compaction() {
            let records = Inbound::snapshot(&inner.cursor, &inner.recent, &inner.pending);
            inner.log.compact(&records)?;
        }
        Ok(())
    }

    /// Make append `number` durable. Whoever syncs covers every append
    /// written before it started, so concurrent callers mostly find their
    /// append already synced and skip their own `fdatasync`.
    fn commit(&self, number: u64) -> std::io::Result<()> {
        let mut synced = lock(&self.synced);
        if *synced >= number {
            return Ok(());
        }
        // The current file and how far it reaches, read together: appends
        // to an older file were made durable by the compaction that
        // replaced it.
        let (upto, file) = {
            let inner = lock(&self.inner);
            (inner.log.written, inner.log.file.try_clone()?)
        };
        file.sync_data()?;
        *synced = upto;
        Ok(())
    }
}

/// The gateway's record of delivery keys it started sending: one JSON line
/// per event (`{"begin":key}`, `{"unsent":key}`), each synced before the
/// call returns. The last 10,000 started keys are remembered.
#[derive(Debug)]
pub struct DeliveryJournal {
    state: Mutex<Deliveries>,
}

#[derive(Debug)]
struct Deliveries {
    log: Log,
    started: Recent,
    remembered: usize,
}

impl Deliveries {
    fn snapshot(started: &Recent) -> Vec<Value> {
        started
            .order
            .iter()
            .map(|key| json!({ "begin": key }))
            .collect()
    }

    fn append(&mut self, record: Value) -> std::io::Result<()> {
        self.log.write(&[record])?;
        self.log.file.sync_data()?;
        if self.log.appended > self.remembered * 2 || self.log.due_for_compaction() {
            let records = Self::snapshot(&self.started);
            self.log.compact(&records)?;
        }
        Ok(())
    }
}

impl DeliveryJournal {
    /// Open (or create) the journal at `path`, replaying it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, RECENT)
    }

    fn open_with(path: &Path, remembered: usize) -> std::io::Result<Self> {
        let mut started = Recent::default();
        Log::replay(path, |record: Value| {
            if let Some(key) = record["begin"].as_str() {
                started.insert(key, remembered);
            } else if let Some(key) = record["unsent"].as_str() {
                started.remove(key);
            }
        })?;
        let log = Log::start(path, &Deliveries::snapshot(&started))?;
        Ok(DeliveryJournal {
            state: Mutex::new(Deliveries {
                log,
                started,
                remembered,
            }),
        })
    }

    /// Whether sending `key` was ever started (and not known unsent).
    pub fn started(&self, key: &str) -> bool {
        lock(&self.state).started.contains(key)
    }

    /// Record that sending `key` starts; on disk when this returns.
    pub fn begin(&self, key: &str) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        state.append(json!({ "begin": key }))?;
        let cap = state.remembered;
        state.started.insert(key, cap);
        Ok(())
    }

    /// Record that `key` was not sent after all (to be sent again).
    pub fn unsent(&self, key: &str) -> std::io::Result<()> {
        let mut state = lock(&self.state);
        state.append(json!({ "unsent": key }))?;
        state.started.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64) -> Value {
        json!({"id": id, "text": "hi"})
    }

    fn batch(items: &[(u64, bool)]) -> Vec<(String, Option<Value>)> {
        items
            .iter()
            .map(|&(id, answer)| (id.to_string(), answer.then(|| message(id))))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_data_dirs_journals_are_read_for_migration_by_their_shared_names() {
        let dir = tempfile::tempdir().unwrap();
        let irc = InboundJournal::open(&dir.path().join("channels/irc.inbound")).unwrap();
        irc.record(batch(&[(1, true)]), Some("2".into())).unwrap();
        let telegram = InboundJournal::open(&dir.path().join("telegram/42.inbound")).unwrap();
        telegram
            .record(batch(&[(7, false)]), Some("8".into()))
            .unwrap();
        let deliveries = DeliveryJournal::open(&dir.path().join("channels").join(DELIVERIES_FILE));
        deliveries.unwrap().begin("job:a").unwrap();
        std::fs::write(dir.path().join("channels/pairing.json"), "{}").unwrap();

        let journals = read_local(dir.path()).unwrap();
        let names: Vec<&str> = journals.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["42.inbound", "deliveries.journal", "irc.inbound"]);
        let (_, records) = &journals[2];
        assert!(
            records.contains(&json!({"recv": "1", "msg": message(1)})),
            "{records:?}"
        );
        assert!(records.iter().any(|r| r["cursor"] == "2"), "{records:?}");
        assert!(read_local(&dir.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn pending_survives_reopen_and_done_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels/x.journal");
        let journal = InboundJournal::open(&path).unwrap();
        assert_eq!(journal.cursor(), None);
        let fresh = journal
            .record(
                batch(&[(10, true), (11, false), (12, true)]),
                Some("13".into()),
            )
            .unwrap();
        assert_eq!(fresh.len(), 2);
        journal.done("10").unwrap();
        assert!(!journal.is_pending("10") && journal.is_pending("12"));
        drop(journal);

        let journal = InboundJournal::open(&path).unwrap();
        assert_eq!(journal.cursor().as_deref(), Some("13"));
        let pending = journal.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "12");
        assert_eq!(pending[0].1, message(12));
        // Duplicates (a retried webhook, a repeated batch) are not recorded again.
        for id in [10, 11, 12] {
            assert!(
                journal
                    .record(batch(&[(id, true)]), None)
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn pending_messages_come_back_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = InboundJournal::open(&path).unwrap();
        // Keys need not sort in arrival order (Matrix event ids do not).
        for key in ["$b", "$a", "$c"] {
            journal
                .record(vec![(key.into(), Some(json!(key)))], None)
                .unwrap();
        }
        drop(journal);
        let keys: Vec<String> = InboundJournal::open(&path)
            .unwrap()
            .pending()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["$b", "$a", "$c"]);
    }

    #[test]
    fn concurrent_dones_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = std::sync::Arc::new(InboundJournal::open(&path).unwrap());
        let all: Vec<(u64, bool)> = (0..64).map(|id| (id, true)).collect();
        assert_eq!(journal.record(batch(&all), None).unwrap().len(), 64);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for id in (t..64).step_by(8) {
                        journal.done(&id.to_string()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(journal.pending_count(), 0);
        drop(journal);
        let journal = InboundJournal::open(&path).unwrap();
        assert_eq!(journal.pending_count(), 0, "every done reached the file");
        assert!(journal.seen("63"));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = InboundJournal::open(&path).unwrap();
        journal.record(batch(&[(5, true)]), None).unwrap();
        drop(journal);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"done\": \"5").unwrap();
        drop(file);
        let journal = InboundJournal::open(&path).unwrap();
        assert_eq!(journal.pending_count(), 1, "the torn done did not count");
        journal.record(batch(&[(6, true)]), None).unwrap();
        journal.done("5").unwrap();
        drop(journal);
        let journal = InboundJournal::open(&path).unwrap();
        let keys: Vec<String> = journal.pending().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["6"], "the records after the torn line count");
    }

    #[test]
    fn compaction_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let journal = InboundJournal::open(&path).unwrap();
        for id in 0..(COMPACT_AFTER as u64 / 2 + 10) {
            journal
                .record(batch(&[(id, true)]), Some((id + 1).to_string()))
                .unwrap();
            if id != 7 {
                journal.done(&id.to_string()).unwrap();
            }
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 200_000, "compacted: {size} bytes");
        drop(journal);
        let journal = InboundJournal::open(&path).unwrap();
        assert_eq!(journal.pending().len(), 1);
        assert_eq!(journal.pending()[0].0, "7");
        assert_eq!(journal.cursor().as_deref(), Some("2510"));
        assert!(
            journal
                .record(batch(&[(3, true)]), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_delivery_journal_remembers_started_keys_and_forgets_unsent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/deliveries.journal");
        {
            let journal = DeliveryJournal::open(&path).unwrap();
            journal.begin("job:a:1:telegram:1").unwrap();
            journal.begin("job:b:1:telegram:1").unwrap();
            journal.unsent("job:b:1:telegram:1").unwrap();
        }
        // A torn last line, as a crash mid-write leaves it.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"begin\":\"job:c").unwrap();
        drop(file);
        let journal = DeliveryJournal::open(&path).unwrap();
        assert!(journal.started("job:a:1:telegram:1"));
        assert!(!journal.started("job:b:1:telegram:1"));
        assert!(!journal.started("job:c"));
        journal.begin("job:d").unwrap();
        drop(journal);
        assert!(DeliveryJournal::open(&path).unwrap().started("job:d"));
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn delivery_compaction_keeps_the_remembered_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deliveries.journal");
        let journal = DeliveryJournal::open_with(&path, 50).unwrap();
        for i in 0..210 {
            journal.begin(&format!("k{i}")).unwrap();
        }
        drop(journal);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 101, "{lines} lines after compaction");
        let journal = DeliveryJournal::open(&path).unwrap();
        assert!(journal.started("k209"));
        assert!(journal.started("k160"));
        assert!(!journal.started("k0"));
    }
}
