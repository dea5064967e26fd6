//! `exec`, `process` and `web_fetch` driven by the agent runtime: a scripted
//! model calls them, and the results (and refusals) come back as tool
//! results. Library level: the binary's tool wiring is tested elsewhere.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use ocg_agent_lib::context::ContextBudget;
use ocg_agent_lib::providers::{
    CompletionRequest, FinishReason, LlmProvider, ProviderError, ProviderEvent, ProviderStream,
};
use ocg_agent_lib::sessions::SqliteSessionStore;
use ocg_agent_lib::tools::{
    ExecSandbox, ExecTool, ProcessTool, Tool, ToolPolicy, ToolRegistry, WebFetchTool, Workspace,
};
use ocg_agent_lib::{AgentRuntime, RuntimeConfig};
use ocg_core::{Agent, ChatEvent, ChatRequest, ToolCall};
use ocg_tests::{alive, wait_until};

/// A model that makes the queued rounds of tool calls, then says "done".
#[derive(Debug, Default)]
struct ScriptedModel {
    rounds: Mutex<VecDeque<Vec<ToolCall>>>,
}

#[async_trait]
impl LlmProvider for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "scripted-1"
    }

    async fn stream(&self, _request: &CompletionRequest) -> Result<ProviderStream, ProviderError> {
        let round = self.rounds.lock().unwrap().pop_front();
        let events: Vec<Result<ProviderEvent, ProviderError>> = match round {
            Some(calls) => calls
                .into_iter()
                .map(|c| Ok(ProviderEvent::ToolCall(c)))
                .chain([Ok(ProviderEvent::Done {
                    usage: None,
                    finish_reason: FinishReason::ToolCalls,
                })])
                .collect(),
            None => vec![
                Ok(ProviderEvent::TextDelta("done".into())),
                Ok(ProviderEvent::Done {
                    usage: None,
                    finish_reason: FinishReason::Stop,
                }),
            ],
        };
        Ok(Box::pin(futures_util::stream::iter(events)))
    }
}

fn call(id: &str, name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    workspace: Workspace,
    model: Arc<ScriptedModel>,
    agent: AgentRuntime,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let workspace = Workspace::new(&dir.path().join("ws"), &[]).unwrap();
    let mut policy = ToolPolicy {
        exec_shell: true,
        // The real sandbox: the agent binary in helper mode.
        sandbox: ExecSandbox::Kernel {
            helper: ocg_tests::bin_dir().join("ocg-agent"),
            network: false,
        },
        ..ToolPolicy::default()
    };
    for extra in ["/usr/bin/sleep", "/usr/bin/perl"] {
        policy
            .exec_allow
            .push(std::fs::canonicalize(extra).unwrap());
    }
    let tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(ExecTool::new(workspace.clone(), policy.clone())),
        Arc::new(ProcessTool::new(workspace.clone(), policy.clone())),
        Arc::new(WebFetchTool::new(&policy)),
    ];
    let registry = ToolRegistry::new(tools, policy).unwrap();
    let model = Arc::new(ScriptedModel::default());
    let agent = AgentRuntime::new(
        model.clone(),
        Arc::new(SqliteSessionStore::in_memory().unwrap()),
        Arc::new(registry),
        None,
        RuntimeConfig {
            budget: ContextBudget {
                system_prompt: "test".into(),
                context_window: 100_000,
                max_answer_tokens: 1000,
                compaction_threshold: 0.9,
            },
            max_tool_rounds: 8,
            agents_file: None,
            recall: Default::default(),
        },
    );
    Setup {
        _dir: dir,
        workspace,
        model,
        agent,
    }
}

/// Run one turn; the `tool_end` events by call id.
async fn turn(
    agent: &AgentRuntime,
    rounds: Vec<Vec<ToolCall>>,
    model: &ScriptedModel,
) -> Vec<(String, String, bool)> {
    *model.rounds.lock().unwrap() = rounds.into();
    let mut stream = agent
        .chat_stream(ChatRequest::user("test:tools", "go"))
        .await
        .unwrap();
    let mut ends = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            ChatEvent::ToolEnd { id, result, ok, .. } => ends.push((id, result, ok)),
            ChatEvent::Done { message, .. } => {
                assert_eq!(message.content, "done");
                break;
            }
            ChatEvent::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    ends
}

fn result<'a>(ends: &'a [(String, String, bool)], id: &str) -> (&'a str, bool) {
    let (_, text, ok) = ends.iter().find(|(i, _, _)| i == id).unwrap();
    (text, *ok)
}

#[tokio::test]
async fn exec_and_web_fetch_through_the_agent_with_refusals() {
    let s = setup();
    let pids = s.workspace.root().join("pids");
    let slow = format!(
        "sleep 100 & echo $! > {0}; echo $$ >> {0}; wait",
        pids.display()
    );
    let ends = turn(
        &s.agent,
        vec![vec![
            call(
                "ok",
                "exec",
                serde_json::json!({"argv": ["echo", "hello", "tools"]}),
            ),
            call(
                "denied",
                "exec",
                serde_json::json!({"argv": ["rm", "-rf", "/"]}),
            ),
            call(
                "slow",
                "exec",
                serde_json::json!({"command": slow, "timeout_secs": 2}),
            ),
            call(
                "loop",
                "web_fetch",
                serde_json::json!({"url": "http://127.0.0.1:9/"}),
            ),
            call(
                "meta",
                "web_fetch",
                serde_json::json!({"url": "http://169.254.169.254/latest/meta-data/"}),
            ),
            call(
                "name",
                "web_fetch",
                serde_json::json!({"url": "http://localhost:9/"}),
            ),
        ]],
        &s.model,
    )
    .await;
    assert_eq!(ends.len(), 6);
    let (text, ok) = result(&ends, "ok");
    assert!(ok && text.starts_with("exit code 0"), "{text}");
    assert!(text.contains("hello tools\n"), "{text}");
    let (text, ok) = result(&ends, "denied");
    assert!(
        !ok && text.starts_with("error [program_not_allowed]"),
        "{text}"
    );
    let (text, ok) = result(&ends, "slow");
    assert!(!ok && text.starts_with("error [timed_out]"), "{text}");
    for id in ["loop", "meta", "name"] {
        let (text, ok) = result(&ends, id);
        assert!(
            !ok && text.starts_with("error [address_not_allowed]"),
            "{id}: {text}"
        );
    }
    // No orphans: the shell and its background sleep are gone.
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(wait_until(Duration::from_secs(2), || pids
        .iter()
        .all(|p| !alive(*p))));
}

#[tokio::test]
async fn background_processes_across_rounds_end_with_the_agent() {
    let s = setup();
    let ends = turn(
        &s.agent,
        vec![
            vec![call(
                "start",
                "process",
                serde_json::json!({"action": "start", "argv": ["cat"]}),
            )],
            vec![call(
                "write",
                "process",
                serde_json::json!({"action": "write", "id": 1, "input": "ping\n"}),
            )],
            vec![call(
                "read",
                "process",
                serde_json::json!({"action": "read", "id": 1, "wait_secs": 5}),
            )],
            vec![call(
                "sleeper",
                "process",
                serde_json::json!({"action": "start", "argv": ["sleep", "100"]}),
            )],
            vec![call(
                "list",
                "process",
                serde_json::json!({"action": "list"}),
            )],
        ],
        &s.model,
    )
    .await;
    let (started, ok) = result(&ends, "start");
    assert!(ok, "{started}");
    let (read, _) = result(&ends, "read");
    assert!(
        read.contains("--- stdout bytes 0..5 of 5 ---\nping\n"),
        "{read}"
    );
    let (list, _) = result(&ends, "list");
    assert!(
        list.contains("1: cat — running") && list.contains("2: sleep 100 — running"),
        "{list}"
    );
    let pid_of = |text: &str| -> u32 {
        let rest = &text[text.find("(pid ").unwrap() + 5..];
        rest[..rest.find(')').unwrap()].parse().unwrap()
    };
    let pids = [pid_of(started), pid_of(result(&ends, "sleeper").0)];
    assert!(pids.iter().all(|p| alive(*p)));

    // The agent goes away: its processes go with it.
    drop(s.agent);
    assert!(
        wait_until(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p))),
        "background processes outlived the agent"
    );
}

/// What a prompt-injected model tried against the old `exec`: each attempt
/// is refused by the kernel, whatever form the path or the socket takes,
/// while ordinary work in the workspace goes on.
#[tokio::test]
async fn programs_are_confined_to_the_workspace_by_the_kernel() {
    let s = setup();
    let install = s.workspace.root().parent().unwrap().to_owned();
    std::fs::write(install.join("env.config"), "OCG_UI_TOKEN=the-secret\n").unwrap();
    let socket_path = install.join("agent.sock");
    let _agent_socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let mut bystander = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let connect = |address: &str| {
        format!(
            "use Socket; my $a = '{address}'; \
             if ($a =~ /^\\//) {{ socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die \"socket: $!\\n\"; \
               connect($s, pack_sockaddr_un($a)) or die \"connect: $!\\n\"; }} \
             else {{ socket(my $s, PF_INET, SOCK_STREAM, 0) or die \"socket: $!\\n\"; \
               connect($s, pack_sockaddr_in({port}, inet_aton('127.0.0.1'))) or die \"connect: $!\\n\"; }} \
             print \"connected\\n\";"
        )
    };
    let outside = install.join("outside.txt");
    let ends = turn(
        &s.agent,
        vec![vec![
            call("config", "exec", serde_json::json!({"argv": ["cat", install.join("env.config")]})),
            call("relative", "exec", serde_json::json!({"argv": ["cat", "../env.config"]})),
            call("grep", "exec", serde_json::json!({"argv": ["grep", "-r", "the-secret", install]})),
            call("environ", "exec", serde_json::json!({"argv": ["cat", format!("/proc/{}/environ", std::process::id())]})),
            call("sort", "exec", serde_json::json!({"argv": ["sort", "-o", outside, "/dev/null"]})),
            call("unix", "exec", serde_json::json!({"argv": ["perl", "-e", connect(&socket_path.display().to_string())]})),
            call("tcp", "exec", serde_json::json!({"argv": ["perl", "-e", connect("tcp")]})),
            call("signal", "exec", serde_json::json!({"command": format!("kill -TERM {}", bystander.id())})),
            call("work", "exec", serde_json::json!({"command":
                "echo hi > out.txt && grep -c hi out.txt && printf 'echo script ran\\n' > s.sh && sh s.sh"})),
        ]],
        &s.model,
    )
    .await;
    for id in ["config", "relative", "grep", "environ", "sort"] {
        let (text, _) = result(&ends, id);
        assert!(!text.starts_with("exit code 0"), "{id}: {text}");
        assert!(
            !text.contains("the-secret") && !text.contains("OCG_"),
            "{id}: {text}"
        );
        assert!(text.contains("Permission denied"), "{id}: {text}");
    }
    assert!(!outside.exists(), "nothing written outside the workspace");
    for id in ["unix", "tcp"] {
        let (text, _) = result(&ends, id);
        assert!(text.contains("socket: Permission denied"), "{id}: {text}");
        assert!(!text.contains("connected"), "{id}: {text}");
    }
    let (text, _) = result(&ends, "signal");
    assert!(!text.starts_with("exit code 0"), "signal: {text}");
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander lives"
    );
    let _ = bystander.kill();
    let (text, ok) = result(&ends, "work");
    assert!(
        ok && text.contains("\n1\n") && text.contains("script ran"),
        "{text}"
    );
    assert!(s.workspace.root().join("out.txt").exists());
    drop(tcp);
}
