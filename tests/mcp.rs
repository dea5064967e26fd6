//! MCP both ways through the real binaries: the agent using the tools of
//! real MCP servers (a server made with the official Python SDK over stdio
//! and streamable HTTP, the reference `server-everything` from npm over
//! stdio), called by a scripted model; and OCG's own memory and chat driven
//! by the Python SDK's client over `ocg mcp` (stdio) and the gateway's
//! `/mcp` (streamable HTTP).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ocg_tests::fake_llm::{self, Script};
use ocg_tests::{Install, KillOnDrop, cached, free_port, wait_until};
use serde_json::{Value, json};

use crate::tools::{call, started, tool_results, turn};

/// The Python that has the MCP SDK (`scripts/test.sh` installs it).
fn python() -> PathBuf {
    cached("OCG_TEST_MCP_PYTHON", "py-mcp/bin/python")
}

/// `tests/py/<name>`.
fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(name)
        .display()
        .to_string()
}

/// An installation whose model is `vendor`, with `mcp.json` holding
/// `servers` (an `mcpServers` object), started.
fn started_with(vendor: &fake_llm::FakeLlm, servers: Value, settings: &[(&str, &str)]) -> Install {
    let text = json!({ "mcpServers": servers }).to_string();
    started_with_file(vendor, &text, settings)
}

/// An installation whose model is `vendor` and whose `mcp.json` is `text`,
/// started.
fn started_with_file(vendor: &fake_llm::FakeLlm, text: &str, settings: &[(&str, &str)]) -> Install {
    let mut install = Install::new().with("OPENAI_BASE_URL", &vendor.base_url);
    for (key, value) in settings {
        install = install.with(key, value);
    }
    std::fs::create_dir_all(install.path("data")).unwrap();
    std::fs::write(install.path("data/mcp.json"), text).unwrap();
    install.ocg(&["start"]).ok();
    install
}

/// `ocg mcp list --json`.
fn servers(install: &Install) -> Vec<Value> {
    let listed = install.ocg(&["mcp", "list", "--json"]);
    serde_json::from_str::<Value>(&listed.stdout())
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The server `name` of `ocg mcp list`, once `ready` holds for it.
fn wait_for_server(install: &Install, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let found = wait_until(Duration::from_secs(60), || {
        last = servers(install)
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap_or(Value::Null);
        ready(&last)
    });
    assert!(
        found,
        "MCP server {name} never got ready: {last}\n{}",
        agent_log(install)
    );
    last
}

fn running(server: &Value) -> bool {
    server["state"] == "running"
}

fn agent_log(install: &Install) -> String {
    std::fs::read_to_string(install.path("logs/ocg-agent.log")).unwrap_or_default()
}

/// The tools the model was offered in request `index`, by name.
fn offered(vendor: &fake_llm::FakeLlm, index: usize) -> Vec<Value> {
    vendor.requests()[index]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .map(|t| {
            t["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_python_stdio_server_is_used_confined_denied_by_policy_and_restarted_after_a_crash() {
    let vendor = fake_llm::start_openai();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("forbidden-ran");
    let install = started_with(
        &vendor,
        json!({
            "py": {
                "command": python(),
                "args": [script("mcp_server.py")],
                "env": {"MCP_TEST_MARKER": marker}
            }
        }),
        &[("OCG_TOOLS_DENY", "py__forbidden")],
    );
    let first = wait_for_server(&install, "py", running);
    assert_eq!(first["transport"], "stdio");
    let listed: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(listed.contains(&"py__add"), "{first}");
    assert!(!listed.contains(&"py__forbidden"), "{first}");

    // The model sees the server's tools with their schemas, and calls them.
    vendor.push(Script::Tools(vec![
        call("py__add", json!({"a": 2, "b": 3})),
        call("py__echo", json!({"text": "hi"})),
    ]));
    vendor.push(Script::Text("ok".into()));
    let events = turn(&install, "web:mcp", "add two and three");
    let tools = offered(&vendor, 0);
    let add = tools
        .iter()
        .find(|t| t["function"]["name"] == "py__add")
        .unwrap_or_else(|| panic!("py__add not offered: {:?}", names(&tools)));
    assert_eq!(add["function"]["description"], "Add two integers.");
    assert_eq!(
        add["function"]["parameters"]["properties"]["a"]["type"],
        "integer"
    );
    assert!(!names(&tools).contains(&"py__forbidden".to_owned()));
    let started: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "tool_start")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(started, ["py__add", "py__echo"]);
    let results = tool_results(&events);
    assert_eq!(results[0], (true, "5".to_owned()), "{results:?}");
    assert_eq!(results[1], (true, "echo: hi".to_owned()));

    // A denied tool never runs, even when the model names it.
    vendor.push(Script::Tools(vec![call("py__forbidden", json!({}))]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:mcp", "run the forbidden one"));
    assert!(
        results[0].1.starts_with("error [not_allowed]"),
        "{results:?}"
    );
    assert!(!marker.exists(), "the denied tool ran");

    // Confined: its own HOME, the workspace as cwd, OCG's files out of reach.
    vendor.push(Script::Tools(vec![
        call("py__whoami", json!({})),
        call(
            "py__read_file",
            json!({"path": install.path("env.config").display().to_string()}),
        ),
        call(
            "py__write_file",
            json!({"path": install.path("data/workspace/from-mcp.txt").display().to_string(), "content": "hello"}),
        ),
    ]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:mcp", "who are you?"));
    let who: Value = serde_json::from_str(&results[0].1).unwrap_or_else(|_| panic!("{results:?}"));
    let home = install.path("data/mcp/py");
    assert_eq!(
        Path::new(who["home"].as_str().unwrap()),
        home.as_path(),
        "{who}"
    );
    assert_eq!(
        std::fs::canonicalize(who["cwd"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(install.path("data/workspace")).unwrap()
    );
    assert_eq!(
        results[1].1, "cannot read: Permission denied",
        "env.config must be out of reach"
    );
    assert!(results[2].0, "{results:?}");
    assert_eq!(
        std::fs::read_to_string(install.path("data/workspace/from-mcp.txt")).unwrap(),
        "hello"
    );
    let pid = who["pid"].as_i64().unwrap();

    // It dies mid-call: a clear tool error, its stderr in the agent log, and
    // a new process serves the next call.
    vendor.push(Script::Tools(vec![call("py__crash", json!({}))]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:mcp", "crash"));
    assert!(
        results[0].1.starts_with("error [mcp_server_died]"),
        "{results:?}"
    );
    let back = wait_for_server(&install, "py", |s| running(s) && s["restarts"] == 1);
    assert!(agent_log(&install).contains("crashing on purpose"));
    vendor.push(Script::Tools(vec![call("py__whoami", json!({}))]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:mcp", "who now?"));
    let again: Value =
        serde_json::from_str(&results[0].1).unwrap_or_else(|_| panic!("{results:?}"));
    assert_ne!(again["pid"].as_i64().unwrap(), pid, "{back}");

    // The server adds a tool and says so: the next prompt offers it.
    vendor.push(Script::Tools(vec![call("py__grow", json!({}))]));
    vendor.push(Script::Text("ok".into()));
    turn(&install, "web:mcp", "grow");
    wait_for_server(&install, "py", |s| {
        s["tools"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("py__late")))
    });
    let asked = vendor.requests().len();
    vendor.push(Script::Tools(vec![call("py__late", json!({}))]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:mcp", "use the new tool"));
    assert!(names(&offered(&vendor, asked)).contains(&"py__late".to_owned()));
    assert_eq!(results[0], (true, "late tool here".to_owned()));

    // `ocg mcp list` and `ocg status` say how it is.
    let table = install.ocg(&["mcp", "list"]).ok().stdout();
    assert!(table.contains("py") && table.contains("running"), "{table}");
    let status = install.ocg(&["status", "--json"]).stdout();
    assert!(status.contains("\"mcp\""), "{status}");
}

#[test]
fn a_broken_entry_is_reported_while_the_others_run_and_a_broken_file_stops_no_chat() {
    let vendor = fake_llm::start_openai();
    let install = started_with(
        &vendor,
        json!({
            "a__b": {"command": "x"},
            "old": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
            "py": {"command": python(), "args": [script("mcp_server.py")]}
        }),
        &[],
    );
    wait_for_server(&install, "py", running);
    let old = wait_for_server(&install, "old", |s| s["state"] == "failed");
    let detail = old["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("mcp_config_invalid") && detail.contains("streamable HTTP"),
        "{old}"
    );
    let status = install.ocg(&["status", "--json"]).stdout();
    assert!(status.contains("a__b"), "{status}");

    // Not JSON at all: reported, no servers, and chat goes on.
    let vendor = fake_llm::start_openai();
    let install = started_with_file(&vendor, "{\"mcpServers\": [", &[]);
    let status = install.ocg(&["status", "--json"]).stdout();
    assert!(status.contains("mcp_config_invalid"), "{status}");
    let events = turn(&install, "web:broken", "hello");
    let done = events.iter().find(|e| e["type"] == "done").unwrap();
    assert_eq!(done["message"]["content"], "echo: hello", "{events:?}");
    assert_eq!(servers(&install), Vec::<Value>::new());
}

#[test]
fn http_servers_are_reached_with_their_headers_and_unusable_ones_are_reported() {
    let vendor = fake_llm::start_openai();
    let port = free_port();
    let token = "test-bearer-7f3a";
    let server = http_server(port, token);
    let url = format!("http://127.0.0.1:{port}/mcp");
    let install = started_with(
        &vendor,
        json!({
            "web": {"type": "http", "url": url, "headers": {"Authorization": "Bearer ${MCP_TEST_TOKEN}"}},
            "wrong": {"url": url, "headers": {"Authorization": "Bearer wrong"}},
            "private": {"url": "http://10.255.255.1:9/mcp"},
            "off": {"url": url, "disabled": true}
        }),
        &[("MCP_TEST_TOKEN", token)],
    );
    let web = wait_for_server(&install, "web", running);
    assert_eq!(web["transport"], "http");
    let wrong = wait_for_server(&install, "wrong", |s| s["state"] == "failed");
    assert!(
        wrong["detail"].as_str().unwrap_or_default().contains("401"),
        "{wrong}"
    );
    let private = wait_for_server(&install, "private", |s| s["state"] == "failed");
    assert!(
        private["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("10.255.255.1"),
        "{private}"
    );
    assert_eq!(
        wait_for_server(&install, "off", |_| true)["state"],
        "disabled"
    );

    vendor.push(Script::Tools(vec![call(
        "web__add",
        json!({"a": 20, "b": 22}),
    )]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:http", "add"));
    assert_eq!(results[0], (true, "42".to_owned()), "{results:?}");
    let tools = names(&offered(&vendor, 0));
    assert!(!tools.iter().any(|n| n.starts_with("wrong__")), "{tools:?}");

    // The failing servers are on the agent's health; chat went on.
    let status = install.ocg(&["status", "--json"]).stdout();
    assert!(status.contains("wrong"), "{status}");

    // It dies: the next call fails clearly, the server is marked failed at
    // once and its tools leave the prompt; started again, it is back.
    drop(server);
    vendor.push(Script::Tools(vec![call(
        "web__add",
        json!({"a": 1, "b": 1}),
    )]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:http", "add again"));
    assert!(results[0].1.starts_with("error [mcp_"), "{results:?}");
    let down = wait_for_server(&install, "web", |s| s["state"] == "failed");
    let asked = vendor.requests().len();
    turn(&install, "web:http", "anything else?");
    let tools = names(&offered(&vendor, asked));
    assert!(
        !tools.iter().any(|n| n.starts_with("web__")),
        "{down} {tools:?}"
    );
    let _server = http_server(port, token);
    wait_for_server(&install, "web", running);
    let asked = vendor.requests().len();
    turn(&install, "web:http", "and now?");
    assert!(names(&offered(&vendor, asked)).contains(&"web__add".to_owned()));
}

/// tests/py/mcp_server.py over streamable HTTP on `port`, accepting `token`.
fn http_server(port: u16, token: &str) -> KillOnDrop {
    let server = KillOnDrop(
        Command::new(python())
            .args([&script("mcp_server.py"), "http", &port.to_string(), token])
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    server
}

#[test]
fn the_reference_everything_server_from_npm_runs_confined_without_the_agents_environment() {
    let vendor = fake_llm::start_openai();
    let program = cached(
        "OCG_TEST_MCP_NPM",
        "npm-mcp/node_modules/.bin/mcp-server-everything",
    );
    let install = started_with(
        &vendor,
        json!({"everything": {"command": program, "args": ["stdio"]}}),
        &[("OPENAI_API_KEY", "sk-never-shown")],
    );
    wait_for_server(&install, "everything", running);
    vendor.push(Script::Tools(vec![
        call("everything__echo", json!({"message": "hello"})),
        call("everything__get-sum", json!({"a": 1, "b": 2})),
        call("everything__get-env", json!({})),
    ]));
    vendor.push(Script::Text("ok".into()));
    let results = tool_results(&turn(&install, "web:everything", "use everything"));
    assert_eq!(results[0], (true, "Echo: hello".to_owned()), "{results:?}");
    assert!(results[1].0 && results[1].1.contains('3'), "{results:?}");
    assert!(results[2].0, "{results:?}");
    for secret in ["sk-never-shown", "OCG_", "OPENAI"] {
        assert!(
            !results[2].1.contains(secret),
            "the server saw {secret}: {}",
            results[2].1
        );
    }
}

#[test]
fn another_mcp_client_uses_ocgs_memory_and_chat_over_stdio_and_the_gateway() {
    let vendor = fake_llm::start_openai();
    let install = started(&vendor);
    let client = |mode: &str, ops: Value, rest: &[&str]| -> Vec<Value> {
        let out = Command::new(python())
            .arg(script("mcp_client.py"))
            .arg(mode)
            .arg(ops.to_string())
            .args(rest)
            .envs(install.env())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<Value>(stdout.trim())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| {
                panic!(
                    "{mode} client failed: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    let ocg = ocg_tests::bin_dir().join("ocg").display().to_string();

    // stdio: `ocg mcp`, as an editor would start it.
    let results = client(
        "stdio",
        json!([
            ["list"],
            ["call", "memory_store", {"text": "The user's cat is called Miso", "category": "fact"}],
            ["call", "memory_search", {"query": "what is the name of my pet?", "limit": 3}],
            ["call", "memory_get", {"id": "no-such-id"}],
            ["call", "memory_search", {"query": 7}],
            ["call", "chat", {"message": "hello there", "session": "editor"}]
        ]),
        &[&ocg, "mcp"],
    );
    assert_eq!(
        results[0],
        json!([
            "chat",
            "memory_delete",
            "memory_get",
            "memory_list",
            "memory_search",
            "memory_store"
        ])
    );
    assert_eq!(results[1]["error"], false, "{}", results[1]);
    let id = results[1]["structured"]["memory"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let found = &results[2]["structured"]["memories"];
    assert_eq!(found[0]["text"], "The user's cat is called Miso", "{found}");
    assert_eq!(results[3]["error"], true);
    assert!(
        results[3]["text"]
            .as_str()
            .unwrap()
            .starts_with("not_found"),
        "{}",
        results[3]
    );
    assert!(
        results[4]["text"]
            .as_str()
            .unwrap()
            .starts_with("invalid_arguments"),
        "{}",
        results[4]
    );
    assert_eq!(results[5]["text"], "echo: hello there", "{}", results[5]);
    let (status, history) =
        ocg_tests::unix_http_get(&install.socket(), "/v1/sessions/mcp%3Aeditor/history").unwrap();
    assert_eq!(status, 200, "{history}");
    assert!(history.contains("hello there"), "{history}");

    // Streamable HTTP on the gateway, behind the UI token.
    let token = install.file_setting("OCG_UI_TOKEN").unwrap();
    let url = format!("{}/mcp", install.gateway_url());
    let results = client(
        "http",
        json!([
            ["call", "memory_list", {}],
            ["call", "memory_delete", {"id": id}],
            ["call", "memory_list", {}]
        ]),
        &[&url, &token],
    );
    assert_eq!(results[0]["structured"]["total"], 1, "{}", results[0]);
    assert_eq!(results[1]["error"], false, "{}", results[1]);
    assert_eq!(results[2]["structured"]["total"], 0, "{}", results[2]);
    let refused = Command::new(python())
        .args([
            &script("mcp_client.py"),
            "http",
            "[[\"list\"]]",
            &url,
            "wrong",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let (status, _) = ocg_tests::http_send("POST", &url, b"{}").unwrap();
    assert_eq!(status, 401);
}
