//! Helpers for the integration tests: a private OCG installation per test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod fake_discord;
pub mod fake_llm;
pub mod fake_slack;
pub mod fake_telegram;
pub mod fast_model;
pub mod irc_server;
pub mod mail_server;
pub mod matrix_server;
pub mod postgres_server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The directory holding the built binaries (`target/debug`): the test
/// executable lives in `target/debug/deps`. Build them first with
/// `cargo build --workspace`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_owned();
    assert!(
        dir.join("ocg").is_file(),
        "{} has no ocg binary: run `cargo build --workspace` before the tests",
        dir.display()
    );
    dir
}

/// Serve `app` on a free port of 127.0.0.1 from a thread of its own (one
/// single-threaded runtime, so a fake server competes for the cores no more
/// than it must); its address.
pub fn serve_on_own_thread(app: axum::Router) -> std::net::SocketAddr {
    use axum::serve::ListenerExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .unwrap()
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

/// A free TCP port on 127.0.0.1 (free when asked; tests use it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One OCG installation in a temporary directory: its own pid dir, logs,
/// socket, data dir and ports. Dropping it stops whatever it started.
#[derive(Debug)]
pub struct Install {
    pub dir: tempfile::TempDir,
    pub gateway_port: u16,
    pub embedding_port: u16,
    /// Settings added after (and so overriding) the defaults above.
    pub extra: Vec<(String, String)>,
}

impl Install {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ocg-test-")
            .tempdir()
            .unwrap();
        Install {
            dir,
            gateway_port: free_port(),
            embedding_port: free_port(),
            extra: Vec::new(),
        }
    }

    /// Add (or override) a setting for every program this installation runs.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pid_dir(&self) -> PathBuf {
        self.path("pids")
    }

    pub fn socket(&self) -> PathBuf {
        self.path("agent.sock")
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.display().to_string();
        let defaults: Vec<(String, String)> = vec![
            ("OCG_PID_DIR".into(), path(self.pid_dir())),
            ("OCG_LOG_DIR".into(), path(self.path("logs"))),
            ("OCG_DATA_DIR".into(), path(self.path("data"))),
            ("OCG_AGENT_SOCK".into(), path(self.socket())),
            ("OCG_PORT".into(), self.gateway_port.to_string()),
            ("OCG_EMBEDDING_PORT".into(), self.embedding_port.to_string()),
            (
                "OCG_EMBEDDING_PORT_MAX".into(),
                (self.embedding_port + 20).to_string(),
            ),
            ("OCG_START_TIMEOUT".into(), "10".into()),
            // A remote provider that is never called unless a test chats: the
            // process tests must not load the local model.
            ("OPENAI_BASE_URL".into(), "http://127.0.0.1:9/v1".into()),
        ];
        defaults
            .into_iter()
            .chain(self.extra.iter().cloned())
            .collect()
    }

    /// A command for binary `name` in this installation's environment.
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(bin_dir().join(name));
        command
            .current_dir(self.dir.path())
            .env_remove("OCG_CONFIG")
            .env_remove("OCG_EMBEDDING_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("API_KEY")
            .env_remove("BASE_URL")
            .env_remove("MODEL")
            .envs(self.env());
        command
    }

    /// Start binary `name` of this installation with its output discarded,
    /// killed when the handle is dropped.
    pub fn spawn_quiet(&self, name: &str) -> KillOnDrop {
        KillOnDrop(
            self.command(name)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Run `ocg <args>` to completion.
    pub fn ocg(&self, args: &[&str]) -> Run {
        Run(self.command("ocg").args(args).output().unwrap())
    }

    /// A setting of this installation's `env.config` (where the services
    /// store the tokens they generate at first start).
    pub fn file_setting(&self, key: &str) -> Option<String> {
        let file = ocg_core::config::env_file::EnvFile::read(&self.path("env.config")).ok()?;
        file.get(key).map(str::to_owned)
    }

    /// The pid recorded for `service`, if any.
    pub fn recorded_pid(&self, service: &str) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.pid_dir().join(format!("ocg-{service}.pid"))).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }
}

impl Default for Install {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = self.command("ocg").args(["stop", "--force"]).output();
    }
}

/// A service started by a test itself (not through `ocg start`, so no pid
/// file names it): killed and reaped when dropped, so a failing test leaves
/// nothing running.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    /// Assert success, showing the output otherwise.
    pub fn ok(self) -> Self {
        assert!(
            self.0.status.success(),
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    ocg_process::proc_stat::read(pid).is_some_and(|s| !s.is_zombie())
}

/// Poll `condition` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// `GET url` with a plain HTTP/1.1 request; the status code and body.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let authority = url.strip_prefix("http://")?.split('/').next()?;
    let path = &url["http://".len() + authority.len()..];
    let path = if path.is_empty() { "/" } else { path };
    let stream = std::net::TcpStream::connect(authority).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    exchange(stream, authority, path)
}

/// `GET path` over the Unix socket at `socket`; the status code and body.
pub fn unix_http_get(socket: &Path, path: &str) -> Option<(u16, String)> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    exchange(stream, "agent", path)
}

fn exchange(
    mut stream: impl std::io::Read + std::io::Write,
    host: &str,
    path: &str,
) -> Option<(u16, String)> {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// `POST path` with a JSON body over the Unix socket; the status code and body.
pub fn unix_http_post(socket: &Path, path: &str, json: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// `method url` with `body` (sent as `application/json`) over a plain
/// HTTP/1.1 TCP connection; the status code and body.
pub fn http_send(method: &str, url: &str, body: &[u8]) -> Option<(u16, String)> {
    http_send_with(method, url, &[], body)
}

/// [`http_send`] with extra request headers.
pub fn http_send_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let authority = url.strip_prefix("http://")?.split('/').next()?;
    let path = &url["http://".len() + authority.len()..];
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    // A `Host` among `headers` replaces the URL's.
    let mut extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        extra.push_str(&format!("Host: {authority}\r\n"));
    }
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .ok()?;
    // A server may answer (413) before reading a large body: ignore a
    // write error and read what it said.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = &answer[split + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a `Transfer-Encoding: chunked` answer.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let rest = &body[line_end + 2..];
        out.extend_from_slice(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// Run `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test certificate authority and a server certificate it issued for
/// `localhost` and 127.0.0.1, made with `openssl` in `d`: `ca.pem`, and
/// `leaf.pem` with its key `leaf.key`.
pub fn test_certificates(d: &Path) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=OCG test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// What the README's test command installed: the path in environment
/// variable `env` (`scripts/test.sh` exports it), else `relative` under the
/// cache (`OCG_CACHE_DIR`, default `~/.cache/ocg`).
pub fn cached(env: &str, relative: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("OCG_CACHE_DIR")
            .map_or_else(
                || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ocg"),
                PathBuf::from,
            )
            .join(relative)
    })
}

/// The real `llama-server` and embedding model: from `LLAMA_SERVER_BIN` and
/// `EMBEDDING_MODEL_PATH`, else where `scripts/setup-llama.sh` caches them.
pub fn embedding_model() -> (String, String) {
    let cache = std::env::var("OCG_CACHE_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/ocg", std::env::var("HOME").unwrap_or_default()));
    let bin =
        std::env::var("LLAMA_SERVER_BIN").unwrap_or_else(|_| format!("{cache}/bin/llama-server"));
    let model = std::env::var("EMBEDDING_MODEL_PATH")
        .unwrap_or_else(|_| format!("{cache}/models/all-minilm-l6-v2-f16.gguf"));
    assert!(
        Path::new(&bin).is_file() && Path::new(&model).is_file(),
        "no llama-server ({bin}) or embedding model ({model}): run scripts/setup-llama.sh"
    );
    (bin, model)
}

/// Helpers shared by the benchmark programs.
pub mod bench {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A release `ocg-agent` on a temporary socket, data and pid dir (its
    /// environment cleared), answering with the OpenAI-compatible model at
    /// `llm_url`; killed when dropped.
    #[derive(Debug)]
    pub struct BenchAgent {
        pub child: Child,
        pub socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Drop for BenchAgent {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Start [`BenchAgent`] `bin` with `env` added (and `GLIBC_TUNABLES`
    /// passed through, for allocator settings to compare); it is listening
    /// when this returns.
    pub fn start_agent(bin: &Path, llm_url: &str, env: &[(&str, &str)]) -> BenchAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = Command::new(bin)
            .current_dir(dir.path())
            .env_clear()
            .env("HOME", dir.path())
            .env("OCG_AGENT_SOCK", &socket)
            .env("OCG_DATA_DIR", dir.path().join("data"))
            .env("OCG_PID_DIR", dir.path().join("pids"))
            .env("OPENAI_BASE_URL", llm_url)
            .env("OPENAI_MODEL", "gpt-4o-mini")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .envs(std::env::vars().filter(|(key, _)| key == "GLIBC_TUNABLES"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        BenchAgent {
            child,
            socket,
            _dir: dir,
        }
    }

    /// One turn of `session` through the agent's socket (`client` made
    /// with `unix_socket`), streamed and checked to end in `done`: (total,
    /// first delta) in ms.
    pub async fn socket_turn(client: &reqwest::Client, session: &str) -> (f64, f64) {
        use futures_util::StreamExt;
        let start = Instant::now();
        let body = serde_json::json!({"session_key": session, "messages": [{"role": "user", "content": "hi"}]});
        let response = client
            .post("http://agent/v1/chat/stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let mut stream = response.bytes_stream();
        let mut first = None;
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if first.is_none() && text.contains("\"delta\"") {
                first = Some(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        assert!(text.contains("\"type\":\"done\""), "turn failed: {text}");
        (start.elapsed().as_secs_f64() * 1000.0, first.unwrap_or(0.0))
    }

    /// `count` one-shot jobs due at the same whole second, made through the
    /// agent's socket (`client` made with `unix_socket`); per job, the delay
    /// (ms) from its due time to its run's start and to its end.
    pub async fn job_burst(client: &reqwest::Client, count: usize) -> (Vec<f64>, Vec<f64>) {
        let now = jiff::Timestamp::now().as_millisecond();
        let due_ms = (now / 1000 + 3) * 1000;
        let due = jiff::Timestamp::from_millisecond(due_ms)
            .unwrap()
            .to_string();
        let mut ids = Vec::new();
        for n in 0..count {
            let job = serde_json::json!({
                "schedule": {"kind": "at", "at": due},
                "message": format!("burst {n}"),
            });
            let response = client
                .post("http://agent/v1/jobs")
                .json(&job)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let created: serde_json::Value = response.json().await.unwrap();
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for id in &ids {
            loop {
                let runs: serde_json::Value = client
                    .get(format!("http://agent/v1/jobs/{id}/runs"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(run) = runs.as_array().and_then(|r| r.first()) {
                    if run["status"] == "ok" {
                        starts.push((run["started_at_ms"].as_i64().unwrap() - due_ms) as f64);
                        ends.push((run["ended_at_ms"].as_i64().unwrap() - due_ms) as f64);
                        break;
                    }
                }
                assert!(Instant::now() < deadline, "job {id} did not run");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        (starts, ends)
    }

    /// One chat turn through the gateway's OpenAI-compatible API at `url`
    /// in session `session`, checked to be the fake model's echo of `text`;
    /// its latency in ms.
    pub async fn api_turn(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        session: &str,
        text: &str,
    ) -> f64 {
        let start = Instant::now();
        let response = client
            .post(url)
            .bearer_auth(token)
            .json(&serde_json::json!({
                "model": "fake", "user": session,
                "messages": [{"role": "user", "content": text}],
            }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("echo: {text}")
        );
        start.elapsed().as_secs_f64() * 1000.0
    }

    /// `sessions` API clients at once, `turns` each, one session per client
    /// (`<prefix><i>`); the turns per second.
    pub async fn api_throughput(
        client: &reqwest::Client,
        url: &str,
        token: &str,
        prefix: &str,
        (sessions, turns): (usize, usize),
    ) -> f64 {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
            let session = format!("{prefix}{s}");
            tasks.push(tokio::spawn(async move {
                for n in 0..turns {
                    api_turn(&client, &url, &token, &session, &format!("{session}-{n}")).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        (sessions * turns) as f64 / start.elapsed().as_secs_f64()
    }

    /// The `p`-quantile (0..=1) of `samples` (sorted in place).
    pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(index).copied().unwrap_or(f64::NAN)
    }

    /// One side of a channel benchmark: latency samples (ms, one message
    /// at a time) and the rate (messages/s) of the concurrent load.
    #[derive(Debug)]
    pub struct Measured {
        pub latency_ms: Vec<f64>,
        pub rate: f64,
    }

    /// Print the table of a channel benchmark: `channel` (what `path` the
    /// messages take) against the API baseline, for `load` (`50 people ×
    /// 2`) and `sequential` messages one at a time.
    pub fn print_channel_table(
        (channel, path): (&str, &str),
        (load, sequential): (&str, usize),
        mut baseline: Measured,
        mut measured: Measured,
    ) {
        let (d50, d99) = (
            percentile(&mut baseline.latency_ms, 0.5),
            percentile(&mut baseline.latency_ms, 0.99),
        );
        let (c50, c99) = (
            percentile(&mut measured.latency_ms, 0.5),
            percentile(&mut measured.latency_ms, 0.99),
        );
        let (direct_rate, channel_rate) = (baseline.rate, measured.rate);
        println!();
        println!("{channel} channel ({path}) against the same turns through the gateway's");
        println!("OpenAI-compatible API (baseline), release build, same run.");
        println!();
        println!("| measure | baseline (API) | {channel} channel | channel / baseline |");
        println!("|---|---|---|---|");
        println!(
            "| messages/s, {load} | {direct_rate:.0} | {channel_rate:.1} | {:.3}x |",
            channel_rate / direct_rate
        );
        println!(
            "| latency p50, ms (one at a time, {sequential}) | {d50:.2} | {c50:.2} | {:.2}x |",
            c50 / d50
        );
        println!(
            "| latency p99, ms | {d99:.2} | {c99:.2} | {:.2}x |",
            c99 / d99
        );
        println!(
            "| added by the channel p50 / p99, ms | | {:.2} / {:.2} | |",
            c50 - d50,
            c99 - d99
        );
    }

    /// A release `ocg-embedding` from `bin_dir` with the real model, in a
    /// temporary directory; killed (with its llama-server) when dropped.
    #[derive(Debug)]
    pub struct EmbeddingService {
        child: std::process::Child,
        /// Its base URL.
        pub url: String,
        /// The token its routes need (`OCG_EMBEDDING_TOKEN`).
        pub token: ocg_core::config::Secret,
        _dir: tempfile::TempDir,
    }

    impl Drop for EmbeddingService {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl EmbeddingService {
        /// Start it with `env` added, and wait (90 s at most) for its address.
        pub fn start(bin_dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
            let (llama, model) = crate::embedding_model();
            let dir = tempfile::tempdir().unwrap();
            let port = crate::free_port();
            let token = ocg_core::config::Secret::generate().unwrap();
            let child = std::process::Command::new(bin_dir.join("ocg-embedding"))
                .env("OCG_EMBEDDING_TOKEN", token.expose())
                .env("OCG_PID_DIR", dir.path())
                .env("OCG_LOG_DIR", dir.path())
                .env("OCG_DATA_DIR", dir.path().join("data"))
                .env("OCG_EMBEDDING_PORT", port.to_string())
                .env("OCG_EMBEDDING_PORT_MAX", (port + 20).to_string())
                .env("LLAMA_SERVER_BIN", llama)
                .env("EMBEDDING_MODEL_PATH", model)
                .env("OCG_START_TIMEOUT", "60")
                .env("RUST_LOG", "warn")
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .unwrap();
            let addr = dir.path().join("ocg-embedding.addr");
            assert!(crate::wait_until(
                std::time::Duration::from_secs(90),
                || addr.is_file()
            ));
            let url = std::fs::read_to_string(&addr).unwrap().trim().to_owned();
            EmbeddingService {
                child,
                url,
                token,
                _dir: dir,
            }
        }
    }

    /// A whole release stack for a benchmark, in a temporary directory:
    /// `ocg start` with the programs of `bin` and a clean environment (its
    /// own pid, log and data dirs, a free gateway port, `OPENAI_BASE_URL`,
    /// the UI token), `ocg stop --force` when dropped.
    #[derive(Debug)]
    pub struct BenchStack {
        dir: tempfile::TempDir,
        bin: std::path::PathBuf,
        /// The gateway's port.
        pub port: u16,
        env: Vec<(String, String)>,
    }

    impl BenchStack {
        /// A stack of the programs in `bin`, answering with the model at
        /// `llm_url`, signed in with `token`. Not started yet.
        pub fn new(bin: &std::path::Path, llm_url: &str, token: &str) -> Self {
            BenchStack {
                dir: tempfile::tempdir().unwrap(),
                bin: bin.to_owned(),
                port: crate::free_port(),
                env: vec![
                    ("OCG_UI_TOKEN".into(), token.into()),
                    ("OPENAI_BASE_URL".into(), llm_url.into()),
                ],
            }
        }

        /// Add a setting.
        pub fn with(mut self, key: &str, value: &str) -> Self {
            self.env.push((key.into(), value.into()));
            self
        }

        /// Run `ocg <args>`; panics when it fails.
        pub fn ocg(&self, args: &[&str]) {
            let dir = self.dir.path();
            let status = std::process::Command::new(self.bin.join("ocg"))
                .args(args)
                .current_dir(dir)
                .env_clear()
                .env("HOME", dir)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("OCG_PID_DIR", dir.join("pids"))
                .env("OCG_LOG_DIR", dir.join("logs"))
                .env("OCG_DATA_DIR", dir.join("data"))
                .env("OCG_AGENT_SOCK", dir.join("agent.sock"))
                .env("OCG_PORT", self.port.to_string())
                .env("OCG_EMBEDDING_PORT", crate::free_port().to_string())
                .env("RUST_LOG", "warn")
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "ocg {args:?} failed");
        }

        /// The pid `ocg start` recorded for `service`.
        pub fn pid(&self, service: &str) -> u32 {
            let path = self.dir.path().join(format!("pids/ocg-{service}.pid"));
            let text = std::fs::read_to_string(path).unwrap();
            text.split_whitespace().next().unwrap().parse().unwrap()
        }
    }

    impl Drop for BenchStack {
        fn drop(&mut self) {
            self.ocg(&["stop", "--force"]);
        }
    }

    /// Resident memory of `pid` in MB.
    pub fn rss_mb(pid: u32) -> f64 {
        status_mb(pid, "VmRSS")
    }

    /// Resident memory of `pid` in MB, split: (all, anonymous: the heap and
    /// stacks, file-backed: mapped code and mapped database pages, which the
    /// kernel can drop and read again).
    pub fn rss_parts_mb(pid: u32) -> (f64, f64, f64) {
        (
            status_mb(pid, "VmRSS"),
            status_mb(pid, "RssAnon"),
            status_mb(pid, "RssFile"),
        )
    }

    fn status_mb(pid: u32, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN);
        kb / 1024.0
    }

    /// Reproducible vectors and the exact nearest neighbours, to measure
    /// an index's recall (the PostgreSQL test and benchmark).
    pub mod vectors {
        /// A reproducible stream of numbers in [-0.5, 0.5) (xorshift).
        #[derive(Debug, Clone)]
        pub struct Noise(pub u64);

        impl Noise {
            /// The next number.
            pub fn sample(&mut self) -> f32 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 11) as f32 / (1u64 << 53) as f32 - 0.5
            }

            /// A random unit vector of `dimension`.
            pub fn unit(&mut self, dimension: usize) -> Vec<f32> {
                normalized((0..dimension).map(|_| self.sample()).collect())
            }
        }

        /// `v` scaled to length 1.
        pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        }

        /// The indexes of the `k` items of `data` nearest to `query` (by
        /// inner product: cosine for unit vectors), best first.
        pub fn exact_top(data: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
            let mut scored: Vec<(usize, f32)> = data
                .iter()
                .enumerate()
                .map(|(i, v)| (i, v.iter().zip(query).map(|(a, b)| a * b).sum()))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored.into_iter().take(k).map(|(i, _)| i).collect()
        }

        /// The share of the true `k` nearest that `found` holds, over all
        /// queries.
        pub fn recall(found: &[Vec<usize>], truth: &[Vec<usize>], k: usize) -> f64 {
            let hits: usize = found
                .iter()
                .zip(truth)
                .map(|(f, t)| f.iter().filter(|i| t.contains(i)).count())
                .sum();
            hits as f64 / (truth.len() * k) as f64
        }
    }
}
