//! The agent's file, memory and session tools through the real agent binary,
//! driven by a fake model that calls them; memory recall with the real
//! embedding service and model.

use ocg_tests::fake_llm::{self, Script};
use ocg_tests::{Install, unix_http_get, unix_http_post};
use serde_json::{Value, json};

/// One streamed turn on the agent socket: its events.
pub(crate) fn turn(install: &Install, session: &str, text: &str) -> Vec<Value> {
    let body = json!({"session_key": session, "messages": [{"role": "user", "content": text}]});
    let (status, answer) =
        unix_http_post(&install.socket(), "/v1/chat/stream", &body.to_string()).unwrap();
    assert_eq!(status, 200, "{answer}");
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

/// `(ok, result)` of each `tool_end` event.
pub(crate) fn tool_results(events: &[Value]) -> Vec<(bool, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "tool_end")
        .map(|e| {
            (
                e["ok"].as_bool().unwrap(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub(crate) fn call(name: &str, arguments: Value) -> (String, Value) {
    (name.to_owned(), arguments)
}

pub(crate) fn started(vendor: &fake_llm::FakeLlm) -> Install {
    let install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    install.ocg(&["start"]).ok();
    install
}

#[test]
fn file_tools_work_inside_the_workspace_and_refuse_every_escape() {
    let vendor = fake_llm::start_openai();
    let install = started(&vendor);
    let workspace = install.path("data/workspace");
    std::fs::write(install.path("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(install.path("secret.txt"), workspace.join("link")).unwrap();
    std::os::unix::fs::symlink(install.path("data"), workspace.join("datadir")).unwrap();
    let database = install.path("data/ocg.db");

    vendor.push(Script::Tools(vec![call(
        "write",
        json!({"path": "notes/todo.md", "content": "- buy milk\n- call Ann\n"}),
    )]));
    vendor.push(Script::Tools(vec![
        call("read", json!({"path": "notes/todo.md"})),
        call("read", json!({"path": "../../secret.txt"})),
        call("read", json!({"path": "link"})),
        call("read", json!({"path": database.display().to_string()})),
        call("read", json!({"path": "datadir/ocg.db"})),
        call("write", json!({"path": "link", "content": "overwritten"})),
        call("grep", json!({"pattern": "Ann"})),
        call("glob", json!({"pattern": "**/*.md"})),
    ]));
    vendor.push(Script::Tools(vec![call(
        "apply_patch",
        json!({"patch": "*** Begin Patch\n*** Add File: new.txt\n+new\n*** Update File: notes/todo.md\n-- buy bread\n+- buy rice\n*** End Patch"}),
    )]));
    vendor.push(Script::Tools(vec![call(
        "edit",
        json!({"path": "notes/todo.md", "old_text": "buy milk", "new_text": "buy oat milk"}),
    )]));
    vendor.push(Script::Tools(vec![
        call("exec", json!({"argv": ["ls", "notes"]})),
        call("exec", json!({"argv": ["/usr/bin/env"]})),
    ]));
    vendor.push(Script::Text("All done.".into()));

    let events = turn(&install, "web:tools", "organize my notes");
    let results = tool_results(&events);
    assert_eq!(results.len(), 13, "{results:#?}");
    assert_eq!(results[0], (true, "wrote 22 bytes to notes/todo.md".into()));
    assert_eq!(results[1], (true, "- buy milk\n- call Ann".into()));
    for (index, code) in [
        (2, "path_outside_workspace"),
        (3, "path_outside_workspace"),
        (4, "path_outside_workspace"),
        (5, "path_outside_workspace"),
        (6, "path_outside_workspace"),
    ] {
        assert!(!results[index].0, "{index}: {:?}", results[index]);
        assert!(
            results[index].1.starts_with(&format!("error [{code}]")),
            "{index}: {}",
            results[index].1
        );
    }
    assert_eq!(
        results[7],
        (true, "notes/todo.md:2: - call Ann".into()),
        "grep does not follow the symlink out"
    );
    assert_eq!(results[8], (true, "notes/todo.md".into()));
    assert!(!results[9].0 && results[9].1.starts_with("error [patch_mismatch]"));
    assert_eq!(
        results[10],
        (true, "replaced 1 occurrence in notes/todo.md".into())
    );
    assert!(
        results[11].0 && results[11].1.contains("todo.md"),
        "{}",
        results[11].1
    );
    assert!(
        results[12].1.starts_with("error [program_not_allowed]"),
        "{}",
        results[12].1
    );
    assert!(matches!(events.last(), Some(e) if e["type"] == "done"));

    // What happened on disk: the edit, no half-applied patch, the secret untouched.
    assert_eq!(
        std::fs::read_to_string(workspace.join("notes/todo.md")).unwrap(),
        "- buy oat milk\n- call Ann\n"
    );
    assert!(!workspace.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(install.path("secret.txt")).unwrap(),
        "top secret"
    );

    // The model saw each result as a tool message answering its call.
    let requests = vendor.requests();
    let second = requests[2]["messages"].as_array().unwrap();
    let tool_messages: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_messages.len(), 9);
    assert_eq!(tool_messages[0]["tool_call_id"], "call_0");

    // Every call and result is stored with the turn.
    let (_, history) = unix_http_get(&install.socket(), "/v1/sessions/web:tools/history").unwrap();
    let history: Vec<Value> = serde_json::from_str(&history).unwrap();
    let roles: Vec<&str> = history
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "tool").count(), 13);
    assert_eq!(roles.first(), Some(&"user"));
    assert_eq!(roles.last(), Some(&"assistant"));
}

#[test]
fn policy_denies_tools_protects_data_and_session_tools_read_other_sessions() {
    let vendor = fake_llm::start_openai();
    let install = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OCG_TOOLS_DENY", "write,edit,apply_patch,exec");
    // The whole installation as the workspace: its data stays out of reach.
    let root = install.path("").display().to_string();
    let install = install.with("OCG_WORKSPACE", &root);
    install.ocg(&["start"]).ok();
    turn(&install, "telegram:42", "remember the blue door");
    let offered: Vec<String> = vendor.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!offered.iter().any(|n| n == "write" || n == "exec"));
    assert!(offered.iter().any(|n| n == "read"), "{offered:?}");
    assert!(offered.iter().any(|n| n == "sessions_list"), "{offered:?}");

    vendor.push(Script::Tools(vec![
        call("write", json!({"path": "x", "content": "y"})),
        call("sessions_list", json!({})),
        call("session_history", json!({"key": "telegram:42"})),
        call("session_history", json!({"key": "nobody"})),
    ]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:2", "what did I say on telegram?"));
    assert!(
        results[0].1.starts_with("error [not_allowed]"),
        "{results:?}"
    );
    assert!(results[1].1.contains("telegram:42"), "{}", results[1].1);
    assert!(
        results[2].1.contains("remember the blue door"),
        "{}",
        results[2].1
    );
    assert!(results[3].1.starts_with("error [session_not_found]"));

    vendor.push(Script::Tools(vec![
        call("read", json!({"path": "data/ocg.db"})),
        call("grep", json!({"pattern": "blue door"})),
        call("list", json!({"path": "data"})),
    ]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:2", "read the database"));
    assert!(
        results[0].1.starts_with("error [path_protected]"),
        "{results:?}"
    );
    assert!(
        !results[1].1.contains("ocg.db"),
        "grep must not search protected files: {}",
        results[1].1
    );
    assert!(results[2].1.starts_with("error [path_protected]"));

    // A typo in the policy is a clear startup error.
    let typo = Install::new()
        .with("OPENAI_BASE_URL", &vendor.base_url)
        .with("OCG_TOOLS_DENY", "fss");
    let failed = typo.ocg(&["start"]);
    assert_ne!(failed.code(), 0);
    assert!(
        failed.stderr().contains("fss") || failed.stdout().contains("fss"),
        "{}{}",
        failed.stdout(),
        failed.stderr()
    );
}

/// The last user message the model was sent.
pub(crate) fn prompt_of(request: &Value) -> String {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .unwrap()
}

#[test]
fn memory_is_stored_by_the_model_and_recalled_by_a_paraphrase_with_the_real_model() {
    ocg_tests::embedding_model();
    let vendor = fake_llm::start_openai();
    let install = started(&vendor);

    vendor.push(Script::Tools(vec![call(
        "memory_store",
        json!({"text": "The user's sister Maria lives in Lisbon and works as a marine biologist.", "category": "person"}),
    )]));
    vendor.push(Script::Text("I'll remember that.".into()));
    let results = tool_results(&turn(
        &install,
        "web:a",
        "My sister Maria lives in Lisbon, she's a marine biologist.",
    ));
    assert!(
        results[0].0 && results[0].1.starts_with("stored as memory"),
        "{results:?}"
    );

    // Stored again in other words: updated, not duplicated.
    vendor.push(Script::Tools(vec![call(
        "memory_store",
        json!({"text": "The user's sister Maria lives in Lisbon and works as a marine biologist"}),
    )]));
    vendor.push(Script::Text("Noted.".into()));
    let results = tool_results(&turn(&install, "web:a", "Again: Maria, Lisbon."));
    assert!(
        results[0].1.starts_with("updated the existing memory"),
        "{results:?}"
    );
    let (_, page) = unix_http_get(&install.socket(), "/v1/memory").unwrap();
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["memories"][0]["source"], "agent");
    assert_eq!(page["memories"][0]["session"], "web:a");

    // A paraphrased question in another session recalls it...
    let before = vendor.requests().len();
    turn(&install, "web:b", "Where does my sibling live these days?");
    let prompt = prompt_of(&vendor.requests()[before]);
    assert!(prompt.starts_with("<recalled_memories>"), "{prompt}");
    assert!(prompt.contains("Maria lives in Lisbon"), "{prompt}");
    assert!(prompt.ends_with("Where does my sibling live these days?"));

    // ...an unrelated one recalls nothing.
    let before = vendor.requests().len();
    turn(&install, "web:b", "What is a good recipe for pancakes?");
    let prompt = prompt_of(&vendor.requests()[before]);
    assert_eq!(prompt, "What is a good recipe for pancakes?");

    // The stored history holds the question as asked, without the block.
    let (_, history) = unix_http_get(&install.socket(), "/v1/sessions/web:b/history").unwrap();
    let history: Vec<Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(
        history[0]["content"],
        "Where does my sibling live these days?"
    );
}

#[test]
fn chat_goes_on_without_the_embedding_service_and_the_tool_says_so() {
    let vendor = fake_llm::start_openai();
    let install = started(&vendor);
    let (status, body) = unix_http_post(
        &install.socket(),
        "/v1/memory",
        r#"{"text":"The office wifi password is on the fridge"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");

    let pid = install.recorded_pid("embedding").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(ocg_tests::wait_until(
        std::time::Duration::from_secs(5),
        || !ocg_tests::alive(pid)
    ));

    vendor.push(Script::Tools(vec![call(
        "memory_store",
        json!({"text": "The user prefers tea"}),
    )]));
    vendor.push(Script::Text("I could not save that.".into()));
    let events = turn(
        &install,
        "web:down",
        "Remember I prefer tea. Where is the wifi password?",
    );
    let results = tool_results(&events);
    assert!(
        results[0].1.starts_with("error [memory_unavailable]"),
        "{results:?}"
    );
    assert!(matches!(events.last(), Some(e) if e["type"] == "done"));
    let (status, body) = unix_http_get(&install.socket(), "/v1/memory").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("memory_unavailable"), "{body}");
}
