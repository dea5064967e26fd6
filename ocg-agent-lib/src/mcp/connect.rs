//! Reaching one MCP server: a stdio program started confined like `exec`'s
//! programs, or a streamable HTTP endpoint whose address is checked like
//! `web_fetch`'s. Either way the result is an initialized rmcp session.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::config::{SandboxOptions, ServerConfig, Transport};
use crate::tools::{ExecSandbox, is_public_address};

/// How long a server may take from start to the end of its handshake
/// (`npx -y` may download the server first).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of a stdio server's stderr kept to explain why it failed.
const STDERR_TAIL: usize = 3;

/// What every server is started with.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The tools' workspace: stdio servers read and write it, and start in it.
    pub workspace: PathBuf,
    /// Where each stdio server gets its own `HOME` (`<homes>/<name>`).
    pub homes: PathBuf,
    /// How programs are confined (the `exec` tool's setting).
    pub sandbox: ExecSandbox,
    /// What no server may be given access to: the install's data, config
    /// and sockets.
    pub protected: Vec<PathBuf>,
    /// Whether HTTP servers may be on private addresses (`OCG_WEB_ALLOW_PRIVATE`);
    /// loopback URLs are always allowed.
    pub allow_private: bool,
}

/// The client side of one connection; tells its owner when the server's
/// tool list changed.
#[derive(Debug, Clone)]
pub struct Handler {
    pub(super) changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ocg", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(());
    }
}

/// An initialized session.
pub type Session = RunningService<RoleClient, Handler>;

/// A live connection: the session and, for stdio, the program.
#[derive(Debug)]
pub struct Connection {
    /// The MCP session.
    pub session: Session,
    /// The stdio server's program, in its own process group.
    pub child: Option<tokio::process::Child>,
    /// The last lines of its stderr.
    pub stderr: StderrTail,
}

/// The last lines a stdio server wrote to stderr.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == STDERR_TAIL {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// `why`, followed by the last lines the server wrote on stderr (the
    /// end of a traceback says most), if any.
    pub fn explain(&self, why: &str) -> String {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            return why.to_owned();
        }
        let tail: Vec<&str> = lines.iter().map(String::as_str).collect();
        format!("{why}; its stderr ended with: {}", tail.join(" | "))
    }
}

/// Start or reach `server` and complete the MCP handshake.
pub async fn connect(
    server: &ServerConfig,
    launcher: &Launcher,
    handler: Handler,
) -> Result<Connection, String> {
    match &server.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
            sandbox,
        } => {
            let stderr = StderrTail::default();
            let mut child = spawn(
                &server.name,
                command,
                args,
                env,
                cwd.as_deref(),
                sandbox,
                launcher,
            )?;
            let (Some(stdout), Some(stdin), Some(err)) =
                (child.stdout.take(), child.stdin.take(), child.stderr.take())
            else {
                return Err("the program's stdio could not be taken".into());
            };
            tokio::spawn(log_stderr(server.name.clone(), err, stderr.clone()));
            let started = tokio::time::timeout(START_TIMEOUT, handler.serve((stdout, stdin))).await;
            match started {
                Ok(Ok(session)) => Ok(Connection {
                    session,
                    child: Some(child),
                    stderr,
                }),
                Ok(Err(error)) => {
                    end_child(&mut child).await;
                    // Give the stderr reader the program's last words.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(stderr.explain(&format!("the handshake failed: {error}")))
                }
                Err(_) => {
                    end_child(&mut child).await;
                    Err(stderr.explain(&format!(
                        "no handshake within {} s",
                        START_TIMEOUT.as_secs()
                    )))
                }
            }
        }
        Transport::Http { url, headers } => {
            let client = http_client(url, headers, launcher.allow_private).await?;
            let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
                client,
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                    url.as_str(),
                ),
            );
            match tokio::time::timeout(START_TIMEOUT, handler.serve(transport)).await {
                Ok(Ok(session)) => Ok(Connection {
                    session,
                    child: None,
                    stderr: StderrTail::default(),
                }),
                Ok(Err(error)) => Err(format!("the handshake failed: {error}")),
                Err(_) => Err(format!("no handshake within {} s", START_TIMEOUT.as_secs())),
            }
        }
    }
}

/// End a stdio server: its stdin is already closed by the session's end;
/// give it a moment, then kill its whole process group.
pub async fn end_child(child: &mut tokio::process::Child) {
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
        && let Some(pgid) = child.id()
    {
        crate::tools::exec::kill_group(pgid);
        let _ = child.wait().await;
    }
}

async fn log_stderr(server: String, stderr: tokio::process::ChildStderr, tail: StderrTail) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(2000).collect();
        tracing::info!(target: "ocg::mcp", server = %server, "{line}");
        tail.push(line);
    }
}

/// The program as an absolute path: as given when it has a `/`, else the
/// first match on the agent's `PATH`.
fn resolve(command: &str, cwd: &Path) -> Result<PathBuf, String> {
    if command.contains('/') {
        let path = cwd.join(command);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| crate::tools::SAFE_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| {
            candidate.is_file()
                && std::fs::metadata(candidate).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
        .ok_or_else(|| format!("{command:?} is not found on PATH"))
}

/// The directory a program is installed under: `/a/b` for `/a/b/bin/prog`
/// (a venv, a Node or pyenv prefix), else the program's own directory.
fn install_root(program: &Path) -> Option<PathBuf> {
    let dir = program.parent()?;
    match dir.file_name() {
        Some(name) if name == "bin" || name == ".bin" => dir.parent().map(Path::to_path_buf),
        _ => Some(dir.to_path_buf()),
    }
}

/// Whether granting `path` would expose what is protected (it is one of
/// them, or contains or is inside one).
fn exposes(path: &Path, protected: &[PathBuf], allowed_inside: &[&Path]) -> bool {
    protected.iter().any(|p| {
        p.starts_with(path)
            || (path.starts_with(p) && !allowed_inside.iter().any(|a| path.starts_with(a)))
    })
}

fn spawn(
    name: &str,
    command: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    cwd: Option<&Path>,
    options: &SandboxOptions,
    launcher: &Launcher,
) -> Result<tokio::process::Child, String> {
    let cwd = cwd.unwrap_or(&launcher.workspace).to_path_buf();
    let program = resolve(command, &cwd)?;
    let home = launcher.homes.join(name);
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        for dir in [&launcher.homes, &home] {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let mut environment: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| crate::tools::SAFE_PATH.into()),
        ),
        ("HOME".into(), home.display().to_string()),
        ("TMPDIR".into(), tmp.display().to_string()),
        (
            "LANG".into(),
            std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
        ),
        ("TERM".into(), "dumb".into()),
    ];
    if let Ok(tz) = std::env::var("TZ") {
        environment.push(("TZ".into(), tz));
    }
    environment.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut child = match &launcher.sandbox {
        ExecSandbox::Kernel { helper, .. } => {
            let confinement = confinement(&program, args, &cwd, &home, options, launcher);
            let mut child = tokio::process::Command::new(helper);
            child.args(ocg_process::sandbox::helper_args(
                &confinement,
                &program,
                command,
                args,
            ));
            child
        }
        ExecSandbox::Off => {
            let mut child = tokio::process::Command::new(&program);
            child.arg0(command).args(args);
            child
        }
        ExecSandbox::Unconfigured => {
            return Err(
                "stdio servers run only confined, and no sandbox helper is configured \
                 (OCG_EXEC_SANDBOX=off runs them unconfined)"
                    .into(),
            );
        }
    };
    child
        .current_dir(&cwd)
        .env_clear()
        .envs(environment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    child
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))
}

/// What a stdio server may reach: the workspace and its own home to write;
/// the system directories, its program's install prefix (given and
/// resolved), the files its arguments name and its `cwd` to read;
/// directories its arguments name to write (that is what a server is pointed
/// at); and what its `sandbox` entry adds. Nothing that would expose the
/// install's data, config or sockets is granted.
fn confinement(
    program: &Path,
    args: &[String],
    cwd: &Path,
    home: &Path,
    options: &SandboxOptions,
    launcher: &Launcher,
) -> ocg_process::sandbox::Confinement {
    let mut writable = vec![launcher.workspace.clone(), home.to_path_buf()];
    let mut readable: Vec<PathBuf> = ocg_process::sandbox::SYSTEM_DIRS
        .iter()
        .map(PathBuf::from)
        .collect();
    let mut derived_read = vec![program.to_path_buf(), cwd.to_path_buf()];
    let canonical = std::fs::canonicalize(program).ok();
    for path in [Some(program.to_path_buf()), canonical]
        .into_iter()
        .flatten()
    {
        derived_read.extend(install_root(&path));
        derived_read.push(path);
    }
    let mut derived_write = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if !path.is_absolute() {
            continue;
        }
        if path.is_dir() {
            derived_write.push(path.to_path_buf());
        } else if path.is_file() {
            derived_read.extend(path.parent().map(Path::to_path_buf));
        }
    }
    let inside: [&Path; 2] = [&launcher.workspace, home];
    let grant = |list: &mut Vec<PathBuf>, paths: Vec<PathBuf>| {
        for path in paths {
            if exposes(&path, &launcher.protected, &inside) {
                tracing::warn!(
                    path = %path.display(),
                    "not granted to an MCP server: it would expose OCG's own data"
                );
            } else if !list.contains(&path) {
                list.push(path);
            }
        }
    };
    grant(&mut readable, derived_read);
    grant(&mut readable, options.read.clone());
    grant(&mut writable, derived_write);
    grant(&mut writable, options.write.clone());
    ocg_process::sandbox::Confinement {
        writable,
        readable,
        network: options.network,
    }
}

/// The HTTP client for `url`: no redirects, `headers` on every request,
/// and the host's addresses checked and pinned like `web_fetch` does, unless
/// the URL names this machine.
async fn http_client(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    allow_private: bool,
) -> Result<reqwest::Client, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("url {url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name {name:?} is not valid"))?;
        let mut value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .default_headers(map);
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        if !allow_private && let Some(private) = addrs.iter().find(|a| !is_public_address(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, a private address; only loopback URLs or \
                 OCG_WEB_ALLOW_PRIVATE=true reach private networks",
                private.ip()
            ));
        }
        builder = builder.resolve_to_addrs(&host, &addrs);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_explained_by_the_end_of_its_stderr() {
        let tail = StderrTail::default();
        assert_eq!(tail.explain("it exited"), "it exited");
        for line in ["a", "b", "c", "d"] {
            tail.push(line.into());
        }
        assert_eq!(
            tail.explain("it exited"),
            "it exited; its stderr ended with: b | c | d"
        );
    }

    #[test]
    fn install_roots_cover_venvs_and_prefixes() {
        assert_eq!(
            install_root(Path::new("/home/u/venv/bin/python")),
            Some(PathBuf::from("/home/u/venv"))
        );
        assert_eq!(
            install_root(Path::new("/srv/tool/run")),
            Some(PathBuf::from("/srv/tool"))
        );
    }

    #[test]
    fn nothing_of_the_install_is_granted() {
        let protected = vec![
            PathBuf::from("/home/u/.ocg"),
            PathBuf::from("/tmp/ocg.sock"),
        ];
        let workspace = PathBuf::from("/home/u/.ocg/workspace");
        let inside = [workspace.as_path()];
        assert!(exposes(Path::new("/home/u"), &protected, &inside));
        assert!(exposes(Path::new("/home/u/.ocg"), &protected, &inside));
        assert!(exposes(
            Path::new("/home/u/.ocg/indexes"),
            &protected,
            &inside
        ));
        assert!(exposes(Path::new("/tmp"), &protected, &inside));
        assert!(!exposes(
            Path::new("/home/u/.ocg/workspace/x"),
            &protected,
            &inside
        ));
        assert!(!exposes(Path::new("/home/u/notes"), &protected, &inside));
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_loopback_or_allowed() {
        let error = http_client("http://10.0.0.1/mcp", &Default::default(), false)
            .await
            .unwrap_err();
        assert!(error.contains("private address"), "{error}");
        assert!(
            http_client("http://10.0.0.1/mcp", &Default::default(), true)
                .await
                .is_ok()
        );
        assert!(
            http_client("http://127.0.0.1:9/mcp", &Default::default(), false)
                .await
                .is_ok()
        );
        assert!(
            http_client("http://[::1]:9/mcp", &Default::default(), false)
                .await
                .is_ok()
        );
        let bad = [("Bad Header".to_owned(), "x".to_owned())]
            .into_iter()
            .collect();
        assert!(
            http_client("http://127.0.0.1/mcp", &bad, false)
                .await
                .is_err()
        );
    }
}
