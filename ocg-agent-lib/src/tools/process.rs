//! `process`: programs running in the background — start, list, read their
//! output incrementally, write to their stdin, kill them.
//!
//! One tool with an `action` field rather than five tools: the model sees
//! one name for one concept, and the schema lists the actions together.
//! Programs are resolved, allow-listed and started exactly as `exec` does
//! (see [`super::exec`]), each in its own process group.
//!
//! Each process has a waiter task that owns its [`Child`](tokio::process::Child)
//! and two reader tasks that copy stdout and stderr into bounded ring
//! buffers ([`PROCESS_BUFFER`] bytes each; older bytes are dropped and
//! counted). Reads are incremental: every `read` returns what arrived since
//! the previous one, and a byte offset lets the model re-read what the ring
//! still holds. When the leader exits, the rest of its group is killed.
//!
//! Processes belong to the session that started them. Dropping the tool
//! (the agent exiting) kills every group that is still running;
//! [`ProcessTool::shutdown`] does it gracefully (SIGTERM, then SIGKILL).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use super::exec::{command, kill_group, resolve_program};
use super::{Tool, ToolContext, ToolGroup, ToolPolicy, Workspace, arguments};
use crate::AgentError;

/// Bytes of each stream kept per process.
pub const PROCESS_BUFFER: usize = 256 * 1024;

/// Processes that may run at once.
pub const MAX_LIVE_PROCESSES: usize = 8;

/// Processes remembered, running or ended; the oldest ended ones are
/// forgotten first.
const MAX_KEPT: usize = 32;

/// The longest a `read` may wait for new output.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long a `write` may block on a program that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the end of a program waits for its pipes to close.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long `kill` waits for the program to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The newest bytes of a stream and the count of all bytes ever written.
#[derive(Debug)]
struct Ring {
    data: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl Ring {
    fn new(cap: usize) -> Self {
        Ring {
            data: VecDeque::new(),
            cap,
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.data.len() + bytes.len()).saturating_sub(self.cap);
        self.data.drain(..overflow);
        self.data.extend(bytes);
    }

    /// The offset of the oldest byte still held.
    fn start(&self) -> u64 {
        self.total - self.data.len() as u64
    }

    /// Up to `max` bytes from `offset`: the bytes, the offset they start at
    /// (later than `offset` when the ring dropped some) and the offset after.
    fn since(&self, offset: u64, max: usize) -> (Vec<u8>, u64, u64) {
        let from = offset.clamp(self.start(), self.total);
        let skip = usize::try_from(from - self.start()).unwrap_or(usize::MAX);
        let bytes: Vec<u8> = self.data.iter().skip(skip).take(max).copied().collect();
        let to = from + bytes.len() as u64;
        (bytes, from, to)
    }
}

/// What the tasks of one process share with the tool.
#[derive(Debug)]
struct Output {
    stdout: Ring,
    stderr: Ring,
    /// How the program ended, once it has.
    exit: Option<String>,
    ended: Option<Instant>,
    /// Where the next `read` starts.
    stdout_cursor: u64,
    stderr_cursor: u64,
}

#[derive(Debug)]
struct Entry {
    session: Option<String>,
    display: String,
    pid: u32,
    started: Instant,
    output: Arc<Mutex<Output>>,
    changed: Arc<Notify>,
    stdin: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    tasks: Vec<AbortHandle>,
}

impl Entry {
    fn running(&self) -> bool {
        lock(&self.output).exit.is_none()
    }

    fn status(&self) -> String {
        let output = lock(&self.output);
        match (&output.exit, output.ended) {
            (Some(exit), Some(ended)) => format!(
                "{exit} after {:.1} s",
                ended.duration_since(self.started).as_secs_f64()
            ),
            _ => format!(
                "running for {:.1} s, pid {}",
                self.started.elapsed().as_secs_f64(),
                self.pid
            ),
        }
    }
}

/// The processes of one tool; kills those still running when dropped.
#[derive(Debug, Default)]
struct ProcessTable {
    entries: BTreeMap<u32, Entry>,
    next_id: u32,
}

impl Drop for ProcessTable {
    fn drop(&mut self) {
        for entry in self.entries.values() {
            if entry.running() {
                kill_group(entry.pid);
            }
            for task in &entry.tasks {
                task.abort();
            }
        }
    }
}

/// The `process` tool. Dropping it kills every process it started.
#[derive(Debug)]
pub struct ProcessTool {
    workspace: Workspace,
    policy: Arc<ToolPolicy>,
    table: Mutex<ProcessTable>,
    buffer: usize,
    max_live: usize,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum ProcessArguments {
    Start {
        argv: Option<Vec<String>>,
        command: Option<String>,
        cwd: Option<String>,
    },
    List {},
    Read {
        id: u32,
        stdout_offset: Option<u64>,
        stderr_offset: Option<u64>,
        wait_secs: Option<f64>,
    },
    Write {
        id: u32,
        input: String,
        #[serde(default)]
        eof: bool,
    },
    Kill {
        id: u32,
    },
}

async fn pump(
    mut reader: impl AsyncRead + Unpin,
    output: Arc<Mutex<Output>>,
    changed: Arc<Notify>,
    stderr: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut output = lock(&output);
                if stderr {
                    output.stderr.push(&buffer[..n]);
                } else {
                    output.stdout.push(&buffer[..n]);
                }
            }
        }
        changed.notify_waiters();
    }
}

fn not_found(id: u32) -> AgentError {
    AgentError::tool(
        "process_not_found",
        format!("there is no process {id} in this session (see action \"list\")"),
    )
}

impl ProcessTool {
    /// `process` running programs in `workspace` under `policy`.
    pub fn new(workspace: Workspace, policy: ToolPolicy) -> Self {
        ProcessTool {
            workspace,
            policy: Arc::new(policy),
            table: Mutex::default(),
            buffer: PROCESS_BUFFER,
            max_live: MAX_LIVE_PROCESSES,
        }
    }

    /// The same tool keeping `bytes` of each stream (at least 1) and running
    /// at most `max_live` processes at once.
    pub fn with_limits(mut self, bytes: usize, max_live: usize) -> Self {
        self.buffer = bytes.max(1);
        self.max_live = max_live;
        self
    }

    /// Stop every running process: SIGTERM to each group, then SIGKILL to
    /// the groups still there after `grace`. For a graceful agent exit;
    /// dropping the tool kills at once.
    pub async fn shutdown(&self, grace: Duration) {
        let running: Vec<(u32, Arc<Mutex<Output>>)> = lock(&self.table)
            .entries
            .values()
            .filter(|e| e.running())
            .map(|e| (e.pid, e.output.clone()))
            .collect();
        for (pid, _) in &running {
            if let Ok(raw) = i32::try_from(*pid) {
                let _ = killpg(Pid::from_raw(raw), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && running.iter().any(|(_, o)| lock(o).exit.is_none()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (pid, output) in &running {
            if lock(output).exit.is_none() {
                kill_group(*pid);
            }
        }
        tracing::debug!(processes = running.len(), "background processes stopped");
    }

    fn start(
        &self,
        session: Option<&str>,
        argv: Option<Vec<String>>,
        shell: Option<String>,
        cwd: Option<&str>,
    ) -> Result<String, AgentError> {
        let launch = resolve_program(&self.workspace, &self.policy, argv, shell, cwd)?;
        let mut table = lock(&self.table);
        let live = table.entries.values().filter(|e| e.running()).count();
        if live >= self.max_live {
            return Err(AgentError::tool(
                "too_many_processes",
                format!(
                    "{live} processes are running, the most allowed; kill one first (see action \"list\")"
                ),
            ));
        }
        let mut command = command(&self.workspace, &self.policy, &launch)?;
        command.stdin(std::process::Stdio::piped());
        let mut child = command.spawn().map_err(|error| {
            AgentError::tool(
                "spawn_failed",
                format!("{}: {error}", launch.program.display()),
            )
        })?;
        let Some(pid) = child.id() else {
            return Err(AgentError::tool(
                "spawn_failed",
                format!("{}: exited at once", launch.display),
            ));
        };
        let output = Arc::new(Mutex::new(Output {
            stdout: Ring::new(self.buffer),
            stderr: Ring::new(self.buffer),
            exit: None,
            ended: None,
            stdout_cursor: 0,
            stderr_cursor: 0,
        }));
        let changed = Arc::new(Notify::new());
        let mut pumps: Vec<JoinHandle<()>> = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(
                stdout,
                output.clone(),
                changed.clone(),
                false,
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(
                stderr,
                output.clone(),
                changed.clone(),
                true,
            )));
        }
        let mut tasks: Vec<AbortHandle> = pumps.iter().map(JoinHandle::abort_handle).collect();
        let stdin = Arc::new(tokio::sync::Mutex::new(child.stdin.take()));
        let waiter_output = output.clone();
        let waiter_changed = changed.clone();
        let waiter = tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => super::exec::describe(&status),
                Err(error) => format!("lost: {error}"),
            };
            // Whatever the leader left behind in its group goes with it.
            kill_group(pid);
            // The end is reported once its output is in (bounded: a program
            // that left the group could hold a pipe open).
            for pump in pumps {
                let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, pump).await;
            }
            {
                let mut output = lock(&waiter_output);
                output.exit = Some(exit);
                output.ended = Some(Instant::now());
            }
            waiter_changed.notify_waiters();
        });
        tasks.push(waiter.abort_handle());

        table.next_id += 1;
        let id = table.next_id;
        table.entries.insert(
            id,
            Entry {
                session: session.map(str::to_owned),
                display: launch.display.clone(),
                pid,
                started: Instant::now(),
                output,
                changed,
                stdin,
                tasks,
            },
        );
        while table.entries.len() > MAX_KEPT {
            let oldest_ended = table
                .entries
                .iter()
                .find(|(_, e)| !e.running())
                .map(|(id, _)| *id);
            match oldest_ended {
                Some(old) => {
                    table.entries.remove(&old);
                }
                None => break,
            }
        }
        tracing::debug!(id, pid, program = %launch.program.display(), "process started");
        Ok(format!(
            "started process {id} (pid {pid}): {}\nread its output with {{\"action\": \"read\", \"id\": {id}}}",
            launch.display
        ))
    }

    fn list(&self, session: Option<&str>) -> String {
        let table = lock(&self.table);
        let mut text = String::new();
        for (id, entry) in table
            .entries
            .iter()
            .filter(|(_, e)| e.session.as_deref() == session)
        {
            let (out, err) = {
                let output = lock(&entry.output);
                (output.stdout.total, output.stderr.total)
            };
            let _ = writeln!(
                text,
                "{id}: {} — {}; stdout {out} bytes, stderr {err} bytes",
                entry.display,
                entry.status()
            );
        }
        if text.is_empty() {
            text.push_str("no processes");
        }
        text
    }

    /// The handles a call on process `id` needs, if this session owns it.
    fn entry<R>(
        &self,
        session: Option<&str>,
        id: u32,
        f: impl FnOnce(&Entry) -> R,
    ) -> Result<R, AgentError> {
        let table = lock(&self.table);
        match table.entries.get(&id) {
            Some(entry) if entry.session.as_deref() == session => Ok(f(entry)),
            _ => Err(not_found(id)),
        }
    }

    async fn read(
        &self,
        session: Option<&str>,
        id: u32,
        offsets: (Option<u64>, Option<u64>),
        wait: Duration,
    ) -> Result<String, AgentError> {
        let (output, changed) =
            self.entry(session, id, |e| (e.output.clone(), e.changed.clone()))?;
        let has_news = |output: &Output| {
            output.exit.is_some()
                || output.stdout.total > offsets.0.unwrap_or(output.stdout_cursor)
                || output.stderr.total > offsets.1.unwrap_or(output.stderr_cursor)
        };
        if !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if has_news(&lock(&output)) {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    break;
                }
            }
        }
        // Each stream gets half of what the registry hands to the model, so
        // nothing is cut out of the middle of a read.
        let max = (self.policy.output_max / 2).saturating_sub(256).max(512);
        let status = self.entry(session, id, Entry::status)?;
        let mut output = lock(&output);
        let mut text = format!("process {id}: {status}\n");
        for stderr in [false, true] {
            let (ring, cursor) = if stderr {
                (&output.stderr, offsets.1.unwrap_or(output.stderr_cursor))
            } else {
                (&output.stdout, offsets.0.unwrap_or(output.stdout_cursor))
            };
            let (bytes, from, to) = ring.since(cursor, max);
            let name = if stderr { "stderr" } else { "stdout" };
            let _ = writeln!(text, "--- {name} bytes {from}..{to} of {} ---", ring.total);
            if from > cursor {
                let _ = writeln!(
                    text,
                    "[{} bytes were dropped from the buffer before this read]",
                    from - cursor
                );
            }
            text.push_str(&String::from_utf8_lossy(&bytes));
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                text.push('\n');
            }
            if to < ring.total {
                let _ = writeln!(
                    text,
                    "[{} more bytes: read again to continue]",
                    ring.total - to
                );
            }
            if stderr {
                output.stderr_cursor = to;
            } else {
                output.stdout_cursor = to;
            }
        }
        Ok(text)
    }

    async fn write(
        &self,
        session: Option<&str>,
        id: u32,
        input: &str,
        eof: bool,
    ) -> Result<String, AgentError> {
        let stdin = self.entry(session, id, |e| e.stdin.clone())?;
        let mut stdin = stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(AgentError::tool(
                "stdin_closed",
                format!("process {id}: its standard input is closed"),
            ));
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            pipe.write_all(input.as_bytes()).await?;
            pipe.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                *stdin = None;
                return Err(AgentError::tool(
                    "stdin_closed",
                    format!("process {id}: writing to its standard input failed: {error}"),
                ));
            }
            Err(_) => {
                return Err(AgentError::tool(
                    "write_timed_out",
                    format!(
                        "process {id} did not take the input within {} s",
                        WRITE_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        if eof {
            *stdin = None;
        }
        Ok(format!(
            "wrote {} bytes to process {id}{}",
            input.len(),
            if eof { " and closed its input" } else { "" }
        ))
    }

    async fn kill(&self, session: Option<&str>, id: u32) -> Result<String, AgentError> {
        let (pid, output, changed) = self.entry(session, id, |e| {
            (e.pid, e.output.clone(), e.changed.clone())
        })?;
        if lock(&output).exit.is_some() {
            let status = self.entry(session, id, Entry::status)?;
            return Ok(format!("process {id} had already ended: {status}"));
        }
        kill_group(pid);
        let deadline = tokio::time::Instant::now() + KILL_WAIT;
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&output).exit.is_some()
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                break;
            }
        }
        let status = self.entry(session, id, Entry::status)?;
        tracing::debug!(id, pid, "process killed");
        Ok(format!("killed process {id}: {status}"))
    }
}

#[async_trait]
impl Tool for ProcessTool {
    fn name(&self) -> &'static str {
        "process"
    }

    fn group(&self) -> ToolGroup {
        ToolGroup::Exec
    }

    fn description(&self) -> &'static str {
        "Manage programs running in the background (servers, watchers, long builds). \
         action \"start\" with `argv` (or `command` when the shell is enabled) returns an id; \
         \"read\" returns the output that arrived since the last read (`wait_secs` waits for \
         some); \"write\" sends `input` to its stdin (`eof` closes it); \"kill\" stops it and \
         its children; \"list\" shows all with their status. Same allow-list as `exec`."
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["start", "list", "read", "write", "kill"]},
                "argv": {
                    "type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "start: program and arguments, as for exec."
                },
                "command": {"type": "string", "description": "start: shell command for `sh -c`, only when the shell is enabled."},
                "cwd": {"type": "string", "description": "start: working directory, relative to the workspace."},
                "id": {"type": "integer", "minimum": 1, "description": "read, write, kill: the process id returned by start."},
                "wait_secs": {"type": "number", "description": "read: wait up to this many seconds (max 30) for new output or the end."},
                "stdout_offset": {"type": "integer", "minimum": 0, "description": "read: re-read stdout from this byte offset instead of the last read's end."},
                "stderr_offset": {"type": "integer", "minimum": 0, "description": "read: the same for stderr."},
                "input": {"type": "string", "description": "write: text for its standard input (add \"\\n\" for a line)."},
                "eof": {"type": "boolean", "description": "write: close its standard input afterwards."}
            },
            "required": ["action"],
            "additionalProperties": false
        })
    }

    async fn call(
        &self,
        context: &ToolContext,
        arguments_value: serde_json::Value,
    ) -> Result<String, AgentError> {
        let session = context.session_key.as_deref();
        match arguments::<ProcessArguments>("process", arguments_value)? {
            ProcessArguments::Start { argv, command, cwd } => {
                self.start(session, argv, command, cwd.as_deref())
            }
            ProcessArguments::List {} => Ok(self.list(session)),
            ProcessArguments::Read {
                id,
                stdout_offset,
                stderr_offset,
                wait_secs,
            } => {
                let wait = match wait_secs {
                    None => Duration::ZERO,
                    Some(secs) if secs.is_finite() && secs >= 0.0 => {
                        Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64()))
                    }
                    Some(_) => {
                        return Err(AgentError::tool(
                            "invalid_arguments",
                            "`wait_secs` must be a number of seconds, 0 or more",
                        ));
                    }
                };
                self.read(session, id, (stdout_offset, stderr_offset), wait)
                    .await
            }
            ProcessArguments::Write { id, input, eof } => {
                self.write(session, id, &input, eof).await
            }
            ProcessArguments::Kill { id } => self.kill(session, id).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::exec::tests::{alive, setup};
    use super::*;

    async fn call(tool: &ProcessTool, args: serde_json::Value) -> Result<String, AgentError> {
        tool.call(&ToolContext::default(), args).await
    }

    fn number_after(text: &str, marker: &str) -> u32 {
        let rest = &text[text.find(marker).unwrap() + marker.len()..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_ring_keeps_the_newest_bytes() {
        let mut ring = Ring::new(8);
        ring.push(b"abcde");
        ring.push(b"fghij");
        assert_eq!(ring.start(), 2);
        let (bytes, from, to) = ring.since(0, 100);
        assert_eq!((bytes.as_slice(), from, to), (&b"cdefghij"[..], 2, 10));
        let (bytes, from, to) = ring.since(7, 2);
        assert_eq!((bytes.as_slice(), from, to), (&b"hi"[..], 7, 9));
        ring.push(b"0123456789xyz");
        assert_eq!(ring.since(0, 100).0, b"56789xyz");
        assert_eq!(ring.total, 23);
    }

    #[tokio::test]
    async fn start_read_write_and_kill() {
        let (_dir, ws, policy) = setup(false);
        let tool = ProcessTool::new(ws, policy);
        // `cat` echoes its input: a program that reads stdin and writes stdout.
        let started = call(
            &tool,
            serde_json::json!({"action": "start", "argv": ["cat"]}),
        )
        .await
        .unwrap();
        let id = number_after(&started, "started process ");
        let pid = number_after(&started, "(pid ");
        assert!(alive(pid as i32));
        let wrote = call(
            &tool,
            serde_json::json!({"action": "write", "id": id, "input": "one\n"}),
        )
        .await
        .unwrap();
        assert!(wrote.contains("wrote 4 bytes"), "{wrote}");
        let read = call(
            &tool,
            serde_json::json!({"action": "read", "id": id, "wait_secs": 5}),
        )
        .await
        .unwrap();
        assert!(read.contains("running"), "{read}");
        assert!(
            read.contains("--- stdout bytes 0..4 of 4 ---\none\n"),
            "{read}"
        );
        // Only the new output the next time.
        call(
            &tool,
            serde_json::json!({"action": "write", "id": id, "input": "two\n"}),
        )
        .await
        .unwrap();
        let read = call(
            &tool,
            serde_json::json!({"action": "read", "id": id, "wait_secs": 5}),
        )
        .await
        .unwrap();
        assert!(
            read.contains("--- stdout bytes 4..8 of 8 ---\ntwo\n"),
            "{read}"
        );
        // And from an offset again.
        let again = call(
            &tool,
            serde_json::json!({"action": "read", "id": id, "stdout_offset": 0}),
        )
        .await
        .unwrap();
        assert!(again.contains("one\ntwo\n"), "{again}");

        let list = call(&tool, serde_json::json!({"action": "list"}))
            .await
            .unwrap();
        assert!(list.contains(&format!("{id}: cat — running")), "{list}");

        let killed = call(&tool, serde_json::json!({"action": "kill", "id": id}))
            .await
            .unwrap();
        assert!(killed.contains("killed by signal 9"), "{killed}");
        assert!(!alive(pid as i32));
        let list = call(&tool, serde_json::json!({"action": "list"}))
            .await
            .unwrap();
        assert!(
            list.contains("killed by signal 9 (SIGKILL) after"),
            "{list}"
        );
        let error = call(
            &tool,
            serde_json::json!({"action": "write", "id": id, "input": "x"}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), "stdin_closed");
    }

    #[tokio::test]
    async fn eof_ends_a_reader_and_the_exit_code_is_reported() {
        let (_dir, ws, policy) = setup(false);
        let tool = ProcessTool::new(ws, policy);
        let started = call(
            &tool,
            serde_json::json!({"action": "start", "argv": ["wc", "-l"]}),
        )
        .await
        .unwrap();
        let id = number_after(&started, "started process ");
        call(
            &tool,
            serde_json::json!({"action": "write", "id": id, "input": "a\nb\nc\n", "eof": true}),
        )
        .await
        .unwrap();
        let mut reads = String::new();
        for _ in 0..10 {
            let read = call(
                &tool,
                serde_json::json!({"action": "read", "id": id, "wait_secs": 1}),
            )
            .await
            .unwrap();
            reads.push_str(&read);
            if read.contains("exit code") {
                break;
            }
        }
        assert!(reads.contains("exit code 0"), "{reads}");
        assert!(reads.contains("---\n3\n"), "{reads}");
    }

    #[tokio::test]
    async fn buffers_are_bounded_and_drops_are_reported() {
        let (_dir, ws, policy) = setup(false);
        let tool = ProcessTool::new(ws, policy).with_limits(1024, 8);
        let started = call(
            &tool,
            serde_json::json!({"action": "start", "argv": ["head", "-c", "100000", "/dev/zero"]}),
        )
        .await
        .unwrap();
        let id = number_after(&started, "started process ");
        // A read returns as soon as there is new output, so it takes as many
        // reads as the writes arrive in; until the exit, within 30 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut read = String::new();
        while std::time::Instant::now() < deadline {
            read = call(
                &tool,
                serde_json::json!({"action": "read", "id": id, "wait_secs": 1}),
            )
            .await
            .unwrap();
            if read.contains("exit code") {
                break;
            }
        }
        assert!(read.contains("exit code 0"), "{read}");
        let (output, _) = tool.entry(None, id, |e| (e.output.clone(), ())).unwrap();
        assert_eq!(lock(&output).stdout.data.len(), 1024);
        assert_eq!(lock(&output).stdout.total, 100_000);
        // The reads together saw the end of the stream and how much was lost.
        assert!(read.contains("of 100000 ---"), "{read}");
    }

    #[tokio::test]
    async fn limits_sessions_and_refusals() {
        let (_dir, ws, policy) = setup(false);
        let tool = ProcessTool::new(ws, policy).with_limits(1024, 2);
        for _ in 0..2 {
            call(
                &tool,
                serde_json::json!({"action": "start", "argv": ["sleep", "100"]}),
            )
            .await
            .unwrap();
        }
        let code = |r: Result<String, AgentError>| r.unwrap_err().code();
        assert_eq!(
            code(
                call(
                    &tool,
                    serde_json::json!({"action": "start", "argv": ["sleep", "100"]})
                )
                .await
            ),
            "too_many_processes"
        );
        assert_eq!(
            code(
                call(
                    &tool,
                    serde_json::json!({"action": "start", "argv": ["rm", "x"]})
                )
                .await
            ),
            "program_not_allowed"
        );
        assert_eq!(
            code(
                call(
                    &tool,
                    serde_json::json!({"action": "start", "command": "sleep 1"})
                )
                .await
            ),
            "shell_not_allowed"
        );
        assert_eq!(
            code(call(&tool, serde_json::json!({"action": "read", "id": 99})).await),
            "process_not_found"
        );
        assert_eq!(
            code(call(&tool, serde_json::json!({"action": "explode"})).await),
            "invalid_arguments"
        );
        // Another session sees none of them.
        let other = ToolContext {
            session_key: Some("other".into()),
        };
        let list = tool
            .call(&other, serde_json::json!({"action": "list"}))
            .await
            .unwrap();
        assert_eq!(list, "no processes");
        assert_eq!(
            tool.call(&other, serde_json::json!({"action": "kill", "id": 1}))
                .await
                .unwrap_err()
                .code(),
            "process_not_found"
        );
    }

    #[tokio::test]
    async fn dropping_the_tool_kills_every_group() {
        let (_dir, ws, policy) = setup(true);
        let tool = ProcessTool::new(ws.clone(), policy);
        let pids_file = ws.root().join("pids");
        let started = call(
            &tool,
            serde_json::json!({"action": "start", "command": format!("sleep 100 & echo $! > {}; wait", pids_file.display())}),
        )
        .await
        .unwrap();
        let leader = number_after(&started, "(pid ") as i32;
        let mut grandchild = None;
        for _ in 0..250 {
            if let Ok(text) = std::fs::read_to_string(&pids_file) {
                if let Ok(pid) = text.trim().parse::<i32>() {
                    grandchild = Some(pid);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild = grandchild.unwrap();
        assert!(alive(leader) && alive(grandchild));
        drop(tool);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!alive(leader), "the leader survived the tool");
        assert!(!alive(grandchild), "the grandchild survived the tool");
    }

    #[tokio::test]
    async fn shutdown_terminates_gracefully() {
        let (_dir, ws, policy) = setup(false);
        let tool = ProcessTool::new(ws, policy);
        let started = call(
            &tool,
            serde_json::json!({"action": "start", "argv": ["sleep", "100"]}),
        )
        .await
        .unwrap();
        let pid = number_after(&started, "(pid ") as i32;
        let begun = Instant::now();
        tool.shutdown(Duration::from_secs(5)).await;
        assert!(begun.elapsed() < Duration::from_secs(4));
        assert!(!alive(pid));
        let list = call(&tool, serde_json::json!({"action": "list"}))
            .await
            .unwrap();
        assert!(list.contains("killed by signal 15"), "{list}");
    }
}
