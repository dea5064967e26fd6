//! `exec`: run one program to completion, with an allow-list, a timeout, a
//! scrubbed environment and capped output.
//!
//! The pieces shared with `process` live here too: [`resolve_program`]
//! (argv or `sh -c` to a canonical, allowed program), [`command`] (the
//! spawn recipe: cleared environment, own process group, `kill_on_drop`) and
//! [`kill_group`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{ExecSandbox, Tool, ToolContext, ToolGroup, ToolPolicy, Workspace, arguments};
use crate::AgentError;

/// The only `PATH` programs see, and the directories a bare program name is
/// looked up in.
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The shell used for `command` when the policy allows it.
const SHELL: &str = "/bin/sh";

/// Bytes of each of stdout and stderr that `exec` keeps: half from the
/// start, half from the end.
pub const EXEC_OUTPUT_CAP: usize = 64 * 1024;

/// How long to wait for the pipes to close after the group was killed
/// (a process that left the group could hold them open).
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// A program ready to be spawned: canonical path, the name it is called by,
/// its arguments and its working directory.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) program: PathBuf,
    pub(crate) arg0: String,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: PathBuf,
    /// What the model asked for, for listings and logs.
    pub(crate) display: String,
}

fn not_found(name: &str) -> AgentError {
    AgentError::tool(
        "program_not_found",
        format!("{name}: no such program (bare names are looked up in {SAFE_PATH})"),
    )
}

/// Resolve the program and working directory of a call.
///
/// Exactly one of `argv` and `command` must be given. `command` runs as
/// `/bin/sh -c` and only when the policy allows a shell. `argv[0]` with a
/// `/` is a path (relative ones resolve inside the workspace); a bare name
/// is looked up in [`SAFE_PATH`]. The canonical program must be in the
/// policy's allow-list — a program inside the workspace is no exception.
pub(crate) fn resolve_program(
    workspace: &Workspace,
    policy: &ToolPolicy,
    argv: Option<Vec<String>>,
    command: Option<String>,
    cwd: Option<&str>,
) -> Result<Launch, AgentError> {
    let cwd_path = workspace.existing(cwd.unwrap_or("."))?;
    if !cwd_path.is_dir() {
        return Err(AgentError::tool(
            "not_a_directory",
            format!("cwd {}: not a directory", workspace.display(&cwd_path)),
        ));
    }
    let (program, arg0, args, display) = match (argv, command) {
        (Some(_), Some(_)) => {
            return Err(AgentError::tool(
                "invalid_arguments",
                "give either `argv` or `command`, not both",
            ));
        }
        (None, None) => {
            return Err(AgentError::tool(
                "invalid_arguments",
                "give `argv`: the program and its arguments, e.g. [\"ls\", \"-la\"]",
            ));
        }
        (None, Some(command)) => {
            if !policy.exec_shell {
                return Err(AgentError::tool(
                    "shell_not_allowed",
                    "`command` needs a shell, which the policy does not allow \
                     (OCG_EXEC_SHELL); pass `argv` instead",
                ));
            }
            if command.contains('\0') {
                return Err(AgentError::tool(
                    "invalid_arguments",
                    "the command contains a NUL byte",
                ));
            }
            let shell = std::fs::canonicalize(SHELL).map_err(|_| not_found(SHELL))?;
            let display = format!("sh -c {command:?}");
            (
                shell,
                "sh".to_owned(),
                vec!["-c".to_owned(), command],
                display,
            )
        }
        (Some(argv), None) => {
            let Some((name, args)) = argv.split_first() else {
                return Err(AgentError::tool("invalid_arguments", "`argv` is empty"));
            };
            if name.is_empty() || argv.iter().any(|a| a.contains('\0')) {
                return Err(AgentError::tool(
                    "invalid_arguments",
                    "`argv` has an empty program name or a NUL byte",
                ));
            }
            let program = locate(workspace, name)?;
            if !policy.exec_allow.iter().any(|allowed| allowed == &program) {
                return Err(AgentError::tool(
                    "program_not_allowed",
                    format!(
                        "{name} ({}) is not in the exec allow-list (OCG_EXEC_ALLOW)",
                        program.display()
                    ),
                ));
            }
            let display = argv.join(" ");
            (program, name.clone(), args.to_vec(), display)
        }
    };
    Ok(Launch {
        program,
        arg0,
        args,
        cwd: cwd_path,
        display,
    })
}

/// `name` as a canonical path: a path inside the workspace or absolute, or
/// a bare name found in [`SAFE_PATH`].
fn locate(workspace: &Workspace, name: &str) -> Result<PathBuf, AgentError> {
    if name.starts_with('/') {
        return std::fs::canonicalize(name).map_err(|_| not_found(name));
    }
    if name.contains('/') {
        return workspace
            .existing(name)
            .map_err(|error| match error.code() {
                "not_found" => not_found(name),
                _ => error,
            });
    }
    SAFE_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
        .ok_or_else(|| not_found(name))
}

/// The whole environment a program gets: `PATH` fixed to [`SAFE_PATH`],
/// `HOME` the workspace, a UTF-8 C locale, a dumb terminal and the
/// agent's `TZ` when set. Nothing else — no keys, tokens or `OCG_*`.
pub(crate) fn environment(workspace: &Workspace) -> Vec<(String, String)> {
    let mut env = vec![
        ("PATH".to_owned(), SAFE_PATH.to_owned()),
        ("HOME".to_owned(), workspace.root().display().to_string()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("LC_ALL".to_owned(), "C.UTF-8".to_owned()),
        ("TERM".to_owned(), "dumb".to_owned()),
    ];
    if let Ok(tz) = std::env::var("TZ") {
        env.push(("TZ".to_owned(), tz));
    }
    env
}

/// The spawn recipe: the program confined by the sandbox helper (or, with
/// the sandbox off, as it is), cleared environment plus [`environment`], its
/// own process group (so the whole tree can be killed), killed when
/// dropped, stdout and stderr piped. Fails when no sandbox is configured.
pub(crate) fn command(
    workspace: &Workspace,
    policy: &ToolPolicy,
    launch: &Launch,
) -> Result<tokio::process::Command, AgentError> {
    let mut command = match &policy.sandbox {
        ExecSandbox::Kernel { helper, network } => {
            let mut readable: Vec<PathBuf> = ocg_process::sandbox::SYSTEM_DIRS
                .iter()
                .map(PathBuf::from)
                .collect();
            // An allowed program outside the system directories.
            readable.push(launch.program.clone());
            let confinement = ocg_process::sandbox::Confinement {
                writable: vec![workspace.root().to_owned()],
                readable,
                network: *network,
            };
            let mut command = tokio::process::Command::new(helper);
            command.args(ocg_process::sandbox::helper_args(
                &confinement,
                &launch.program,
                &launch.arg0,
                &launch.args,
            ));
            command
        }
        ExecSandbox::Off => {
            let mut command = tokio::process::Command::new(&launch.program);
            command.arg0(&launch.arg0).args(&launch.args);
            command
        }
        ExecSandbox::Unconfigured => {
            return Err(AgentError::tool(
                "sandbox_unavailable",
                "programs run only confined, and no sandbox helper is configured \
                 (ToolPolicy::sandbox; OCG_EXEC_SANDBOX=off runs them unconfined)",
            ));
        }
    };
    command
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(environment(workspace))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    Ok(command)
}

/// SIGKILL every process of the group `pgid`. A group already gone is fine.
pub(crate) fn kill_group(pgid: u32) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    match killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, %error, "killing a process group failed"),
    }
}

/// Kills its process group when dropped: the call's future being dropped
/// (a cancelled turn) takes the program's children with it.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

/// The first and last bytes of a stream, and how many were in between.
#[derive(Debug)]
struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    half: usize,
    total: u64,
}

impl HeadTail {
    fn new(cap: usize) -> Self {
        HeadTail {
            head: Vec::new(),
            tail: VecDeque::new(),
            half: cap / 2,
            total: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.half.saturating_sub(self.head.len());
        let take = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if bytes.len() >= self.half {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.half..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.half);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    fn render(&self) -> String {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let head = String::from_utf8_lossy(&self.head);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail = String::from_utf8_lossy(&tail);
        if kept == self.total {
            format!("{head}{tail}")
        } else {
            format!(
                "{head}\n[… {} bytes dropped of {} …]\n{tail}",
                self.total - kept,
                self.total
            )
        }
    }
}

async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize) -> HeadTail {
    let mut kept = HeadTail::new(cap);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => kept.push(&buffer[..n]),
        }
    }
}

/// The `exec` tool.
#[derive(Debug, Clone)]
pub struct ExecTool {
    workspace: Workspace,
    policy: Arc<ToolPolicy>,
    output_cap: usize,
}

impl ExecTool {
    /// `exec` running programs in `workspace` under `policy`.
    pub fn new(workspace: Workspace, policy: ToolPolicy) -> Self {
        ExecTool {
            workspace,
            policy: Arc::new(policy),
            output_cap: EXEC_OUTPUT_CAP,
        }
    }

    /// The same tool keeping `cap` bytes of each stream (at least 2).
    pub fn with_output_cap(mut self, cap: usize) -> Self {
        self.output_cap = cap.max(2);
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecArguments {
    argv: Option<Vec<String>>,
    command: Option<String>,
    cwd: Option<String>,
    timeout_secs: Option<f64>,
    stdin: Option<String>,
}

/// How a run ended.
enum Ending {
    Exited(std::process::ExitStatus),
    TimedOut,
}

pub(crate) fn describe(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map_or("?", Signal::as_str);
            format!("killed by signal {signal} ({name})")
        }
        (None, None) => "ended".to_owned(),
    }
}

/// A reader task's text, waiting at most [`DRAIN_AFTER_KILL`] for the pipe
/// to close.
async fn collect(task: Option<&mut tokio::task::JoinHandle<HeadTail>>) -> String {
    let Some(task) = task else {
        return String::new();
    };
    match tokio::time::timeout(DRAIN_AFTER_KILL, task).await {
        Ok(Ok(kept)) => kept.render(),
        _ => "[output unavailable: the pipe stayed open]".to_owned(),
    }
}

#[async_trait]
impl Tool for ExecTool {
    fn name(&self) -> &'static str {
        "exec"
    }

    fn group(&self) -> ToolGroup {
        ToolGroup::Exec
    }

    fn description(&self) -> &'static str {
        "Run a program to completion in the workspace and return its exit code, stdout and \
         stderr. `argv` is the program and its arguments (no shell: no pipes, globs or \
         variables); the program must be on the allow-list. `command` runs through `sh -c` \
         and only works when the shell is enabled. For servers or long jobs use `process`."
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "argv": {
                    "type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "Program and arguments, e.g. [\"ls\", \"-la\"]. A bare name is looked up in /usr/local/bin:/usr/bin:/bin; a relative path is inside the workspace."
                },
                "command": {
                    "type": "string",
                    "description": "Shell command for `sh -c`, only when the shell is enabled; otherwise use argv."
                },
                "cwd": {"type": "string", "description": "Working directory, relative to the workspace (default: its root)."},
                "timeout_secs": {
                    "type": "number",
                    "description": format!(
                        "Seconds before the program and its children are killed (default {}, at most {}).",
                        self.policy.exec_timeout.as_secs(),
                        self.policy.exec_max_timeout.as_secs()
                    )
                },
                "stdin": {"type": "string", "description": "Text written to the program's standard input."}
            },
            "additionalProperties": false
        })
    }

    async fn call(
        &self,
        _context: &ToolContext,
        arguments_value: serde_json::Value,
    ) -> Result<String, AgentError> {
        let args: ExecArguments = arguments("exec", arguments_value)?;
        let timeout = match args.timeout_secs {
            None => self.policy.exec_timeout,
            Some(secs) if secs.is_finite() && secs > 0.0 => {
                Duration::from_secs_f64(secs.min(86_400.0)).min(self.policy.exec_max_timeout)
            }
            Some(_) => {
                return Err(AgentError::tool(
                    "invalid_arguments",
                    "`timeout_secs` must be a positive number",
                ));
            }
        };
        let launch = resolve_program(
            &self.workspace,
            &self.policy,
            args.argv,
            args.command,
            args.cwd.as_deref(),
        )?;
        let mut command = command(&self.workspace, &self.policy, &launch)?;
        command.stdin(if args.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let started = Instant::now();
        let mut child = command.spawn().map_err(|error| {
            AgentError::tool(
                "spawn_failed",
                format!("{}: {error}", launch.program.display()),
            )
        })?;
        let mut guard = GroupGuard(child.id());
        tracing::debug!(program = %launch.program.display(), pid = ?guard.0, "exec started");

        if let (Some(input), Some(mut stdin)) = (args.stdin, child.stdin.take()) {
            // A program that does not read its input must not block the call.
            tokio::spawn(async move {
                let _ = stdin.write_all(input.as_bytes()).await;
            });
        }
        let cap = self.output_cap;
        let mut stdout = child
            .stdout
            .take()
            .map(|out| tokio::spawn(read_capped(out, cap)));
        let mut stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(read_capped(err, cap)));

        let ending = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Ending::Exited(status),
            Ok(Err(error)) => {
                return Err(AgentError::tool(
                    "exec_failed",
                    format!("waiting for {}: {error}", launch.display),
                ));
            }
            Err(_) => Ending::TimedOut,
        };
        // The leader has exited or timed out: whatever it left running in
        // its group goes too (background jobs belong to `process`).
        if let Some(pgid) = guard.0.take() {
            kill_group(pgid);
        }
        if matches!(ending, Ending::TimedOut) {
            let _ = child.wait().await;
        }
        let elapsed = started.elapsed();
        let out = collect(stdout.as_mut()).await;
        let err = collect(stderr.as_mut()).await;
        for task in [stdout, stderr].into_iter().flatten() {
            task.abort();
        }
        let status = match &ending {
            Ending::Exited(status) => describe(status),
            Ending::TimedOut => format!(
                "timed out after {:.1} s; the process group was killed",
                timeout.as_secs_f64()
            ),
        };
        let report = format!(
            "{status} in {:.3} s\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            elapsed.as_secs_f64()
        );
        tracing::debug!(program = %launch.program.display(), %status, "exec ended");
        match ending {
            Ending::TimedOut => Err(AgentError::tool("timed_out", report)),
            Ending::Exited(_) => Ok(report),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether a process `pid` exists (zombies count as gone).
    pub(crate) fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    pub(crate) fn setup(shell: bool) -> (tempfile::TempDir, Workspace, ToolPolicy) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "hello\n").unwrap();
        let workspace = Workspace::new(&root, &[]).unwrap();
        // The mechanics (timeouts, caps, groups) unconfined; the sandbox
        // itself is tested with the real helper in tests/tools_exec.rs.
        let mut policy = ToolPolicy {
            exec_shell: shell,
            sandbox: ExecSandbox::Off,
            ..ToolPolicy::default()
        };
        for extra in ["/usr/bin/env", "/usr/bin/sleep"] {
            if let Ok(path) = std::fs::canonicalize(extra) {
                policy.exec_allow.push(path);
            }
        }
        (dir, workspace, policy)
    }

    async fn run(tool: &ExecTool, args: serde_json::Value) -> Result<String, AgentError> {
        tool.call(&ToolContext::default(), args).await
    }

    #[tokio::test]
    async fn runs_argv_in_the_workspace() {
        let (_dir, ws, policy) = setup(false);
        let tool = ExecTool::new(ws, policy);
        let out = run(
            &tool,
            serde_json::json!({"argv": ["cat", "a.txt"], "cwd": "sub"}),
        )
        .await
        .unwrap();
        assert!(out.starts_with("exit code 0"), "{out}");
        assert!(out.contains("--- stdout ---\nhello\n"), "{out}");
        let failed = run(&tool, serde_json::json!({"argv": ["false"]}))
            .await
            .unwrap();
        assert!(failed.starts_with("exit code 1"), "{failed}");
        let piped = run(
            &tool,
            serde_json::json!({"argv": ["wc", "-c"], "stdin": "12345"}),
        )
        .await
        .unwrap();
        assert!(piped.contains("\n5\n"), "{piped}");
    }

    #[tokio::test]
    async fn refuses_what_the_policy_does_not_allow() {
        let (dir, ws, policy) = setup(false);
        let tool = ExecTool::new(ws.clone(), policy);
        let code = |r: Result<String, AgentError>| r.unwrap_err().code();
        // Not on the allow-list, by name or by path.
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["rm", "-rf", "x"]})).await),
            "program_not_allowed"
        );
        // A script in the workspace is not allowed just for being there.
        let script = ws.root().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["./run.sh"]})).await),
            "program_not_allowed"
        );
        // A copy of an allowed program under the same name is not that program.
        std::fs::copy("/usr/bin/true", ws.root().join("ls")).unwrap();
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["./ls"]})).await),
            "program_not_allowed"
        );
        // Listed by its canonical path, the script runs, by relative or
        // absolute path.
        let mut listed = tool.policy.as_ref().clone();
        listed
            .exec_allow
            .push(std::fs::canonicalize(&script).unwrap());
        let allowed = ExecTool::new(ws.clone(), listed);
        for path in ["run.sh".to_owned(), script.display().to_string()] {
            let path = if path.contains('/') {
                path
            } else {
                format!("./{path}")
            };
            let out = run(&allowed, serde_json::json!({"argv": [path]}))
                .await
                .unwrap();
            assert!(out.contains("--- stdout ---\nhi\n"), "{out}");
        }
        assert_eq!(
            code(run(&tool, serde_json::json!({"command": "echo hi"})).await),
            "shell_not_allowed"
        );
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["ls"], "command": "ls"})).await),
            "invalid_arguments"
        );
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["no-such-program-x"]})).await),
            "program_not_found"
        );
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": []})).await),
            "invalid_arguments"
        );
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["ls"], "cwd": "../"})).await),
            "path_outside_workspace"
        );
        let outside = dir.path().display().to_string();
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["ls"], "cwd": outside})).await),
            "path_outside_workspace"
        );
        assert_eq!(
            code(run(&tool, serde_json::json!({"argv": ["ls"], "shell": true})).await),
            "invalid_arguments"
        );
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed() {
        let (_dir, ws, policy) = setup(false);
        let tool = ExecTool::new(ws.clone(), policy);
        let out = run(&tool, serde_json::json!({"argv": ["env"]}))
            .await
            .unwrap();
        let stdout = out.split("--- stdout ---\n").nth(1).unwrap();
        let names: Vec<&str> = stdout
            .lines()
            .take_while(|l| *l != "--- stderr ---")
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for name in &names {
            assert!(
                ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ"].contains(name),
                "unexpected variable {name}: {out}"
            );
        }
        assert!(out.contains(&format!("HOME={}", ws.root().display())));
        assert!(out.contains(&format!("PATH={SAFE_PATH}")));
    }

    #[tokio::test]
    async fn output_is_capped_head_and_tail() {
        let (_dir, ws, policy) = setup(true);
        let tool = ExecTool::new(ws, policy).with_output_cap(1000);
        let out = run(
            &tool,
            serde_json::json!({"command": "echo START; head -c 100000 /dev/zero | tr '\\0' x; echo; echo END"}),
        )
        .await
        .unwrap();
        assert!(out.starts_with("exit code 0"), "{out}");
        assert!(out.contains("START"), "{out}");
        assert!(out.contains("END"), "{out}");
        assert!(out.contains("bytes dropped of 100011"), "{out}");
        assert!(out.len() < 1300, "{}", out.len());
    }

    #[test]
    fn head_tail_keeps_both_ends() {
        let mut kept = HeadTail::new(10);
        for chunk in [&b"abc"[..], b"defgh", b"ijklmnop", b"qr"] {
            kept.push(chunk);
        }
        assert_eq!(kept.head, b"abcde");
        assert_eq!(kept.tail.iter().copied().collect::<Vec<_>>(), b"nopqr");
        assert!(kept.render().contains("8 bytes dropped of 18"));
        let mut small = HeadTail::new(10);
        small.push(b"abcdefg");
        assert_eq!(small.render(), "abcdefg");
    }

    fn pids_in(text: &str) -> Vec<i32> {
        text.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    }

    /// The pids a test's shell wrote to `file`, once there are `count`.
    async fn wait_for_pids(file: &Path, count: usize) -> Vec<i32> {
        for _ in 0..250 {
            let pids = pids_in(&std::fs::read_to_string(file).unwrap_or_default());
            if pids.len() >= count {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} never held {count} pids", file.display());
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let (_dir, ws, policy) = setup(true);
        let tool = ExecTool::new(ws.clone(), policy);
        let pids_file = ws.root().join("pids");
        let command = format!(
            "sleep 100 & echo $! > {0}; sleep 100 & echo $! >> {0}; echo $$ >> {0}; wait",
            pids_file.display()
        );
        let started = Instant::now();
        let error = run(
            &tool,
            serde_json::json!({"command": command, "timeout_secs": 2}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), "timed_out");
        assert!(
            error.to_string().contains("timed out after 2.0 s"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
        let pids = wait_for_pids(&pids_file, 3).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        for pid in pids {
            assert!(!alive(pid), "process {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn background_children_do_not_outlive_the_call() {
        let (_dir, ws, policy) = setup(true);
        let tool = ExecTool::new(ws, policy);
        let started = Instant::now();
        let out = run(&tool, serde_json::json!({"command": "sleep 100 & echo $!"}))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{out}");
        let pid = pids_in(out.split("--- stdout ---").nth(1).unwrap())[0];
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!alive(pid), "background child {pid} survived");
    }

    #[tokio::test]
    async fn a_dropped_call_kills_its_group() {
        let (_dir, ws, policy) = setup(true);
        let tool = ExecTool::new(ws.clone(), policy);
        let pids_file = ws.root().join("pids");
        let command = format!(
            "sleep 100 & echo $! > {0}; echo $$ >> {0}; wait",
            pids_file.display()
        );
        let call = tokio::spawn(async move {
            tool.call(
                &ToolContext::default(),
                serde_json::json!({"command": command}),
            )
            .await
        });
        // Cancel once both processes run (the turn's task being dropped).
        let pids = wait_for_pids(&pids_file, 2).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(200)).await;
        for pid in pids {
            assert!(!alive(pid), "process {pid} survived the cancelled call");
        }
    }

    #[tokio::test]
    async fn timeouts_are_clamped_to_the_maximum() {
        let (_dir, ws, mut policy) = setup(false);
        policy.exec_max_timeout = Duration::from_millis(300);
        let tool = ExecTool::new(ws, policy);
        let started = Instant::now();
        let error = run(
            &tool,
            serde_json::json!({"argv": ["sleep", "30"], "timeout_secs": 1000}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code(), "timed_out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            run(
                &tool,
                serde_json::json!({"argv": ["true"], "timeout_secs": -1})
            )
            .await
            .unwrap_err()
            .code(),
            "invalid_arguments"
        );
    }
}
