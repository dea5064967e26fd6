//! `mcp.json`: the MCP servers the agent uses, in the `mcpServers` shape
//! other clients (Claude Desktop, Cursor, Cline, …) read, so a block from one
//! of them can be pasted as is.
//!
//! ```json
//! { "mcpServers": {
//!     "files": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv/notes"] },
//!     "tickets": { "url": "https://mcp.example.com/mcp", "headers": { "Authorization": "Bearer ${TICKETS_TOKEN}" } }
//! } }
//! ```
//!
//! Besides `command`, `args`, `env`, `cwd`, `url`, `headers`, `type` and
//! `disabled`, a server may carry `timeout` (seconds per call; Cline's key)
//! and OCG's own `sandbox` (`network`, `read`, `write`) for stdio servers.
//! `${NAME}` in any string is replaced by the agent's environment variable
//! `NAME`, so secrets can stay out of the file. Unknown keys are ignored, as
//! the other clients do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::AgentError;

/// A tool call's timeout when the server names none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a server's name may be: its tools are `<name>__<tool>`, and
/// model vendors take tool names of up to 64 characters.
pub const MAX_SERVER_NAME: usize = 24;

/// Every server of one `mcp.json`, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpConfig {
    /// The servers, sorted by name.
    pub servers: Vec<ServerConfig>,
    /// The entries that cannot be used, sorted by name: reported as failed,
    /// never started, while the others run.
    pub invalid: Vec<InvalidServer>,
}

/// An entry of `mcp.json` that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidServer {
    /// Its name in the file.
    pub name: String,
    /// `http` when it has a `url`, else `stdio`.
    pub transport: &'static str,
    /// Why, with the stable code first (`mcp_config_invalid: …`).
    pub reason: String,
}

/// One server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Its name: the prefix of its tools, and a policy name.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Turned off (`"disabled": true`): listed, never started.
    pub disabled: bool,
    /// How long one tool call may take.
    pub timeout: Duration,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A program spoken to over its stdin and stdout.
    Stdio {
        /// The program, as given (a bare name is looked up on `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its environment, beside `PATH`, `HOME` and `LANG`: nothing else of
        /// the agent's environment is passed on.
        env: BTreeMap<String, String>,
        /// Its working directory (default: the workspace).
        cwd: Option<PathBuf>,
        /// What it may reach beyond the workspace.
        sandbox: SandboxOptions,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The endpoint (`https://…/mcp`).
        url: String,
        /// Headers sent with every request (`Authorization: Bearer …`).
        headers: BTreeMap<String, String>,
    },
}

impl Transport {
    /// `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }
}

/// What a stdio server may reach besides the workspace (read and write) and
/// the system directories (read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// Whether it may open network sockets (default: yes; many servers are
    /// clients of a web service, and `npx`/`uvx` fetch the server first).
    pub network: bool,
    /// More directories or files to read.
    pub read: Vec<PathBuf>,
    /// More directories to read and write.
    pub write: Vec<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            network: true,
            read: Vec::new(),
            write: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    /// Each entry decoded on its own, so one mistake spoils only itself.
    #[serde(default)]
    mcp_servers: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
    timeout: Option<f64>,
    #[serde(default)]
    sandbox: Option<SandboxEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxEntry {
    network: Option<bool>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

fn invalid(path: &Path, message: impl Into<String>) -> AgentError {
    AgentError::McpConfig {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl McpConfig {
    /// Read `path`; `Ok(None)` when there is no such file. `${NAME}` is
    /// expanded from the process environment.
    pub fn load(path: &Path) -> Result<Option<McpConfig>, AgentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AgentError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(path, &text, |name| std::env::var(name).ok()).map(Some)
    }

    /// Parse the text of `path` (named in errors), expanding `${NAME}` with
    /// `env`. Only a file that is not JSON of the `mcpServers` shape is an
    /// error; an unusable entry goes to [`invalid`](McpConfig::invalid).
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<McpConfig, AgentError> {
        let file: File = serde_json::from_str(text).map_err(|e| invalid(path, e.to_string()))?;
        let mut config = McpConfig::default();
        for (name, value) in file.mcp_servers {
            let transport = if value.get("url").is_some() {
                "http"
            } else {
                "stdio"
            };
            let entry =
                serde_json::from_value::<Entry>(value).map_err(|e| format!("server {name:?}: {e}"));
            match entry.and_then(|entry| server(&name, entry, &env)) {
                Ok(server) => config.servers.push(server),
                Err(why) => {
                    let error = invalid(path, why);
                    config.invalid.push(InvalidServer {
                        name,
                        transport,
                        reason: format!("{}: {error}", error.code()),
                    });
                }
            }
        }
        Ok(config)
    }
}

fn server(
    name: &str,
    entry: Entry,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<ServerConfig, String> {
    let valid_name = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(format!(
            "server name {name:?}: use up to {MAX_SERVER_NAME} letters, digits, '-' or '_', \
             without \"__\" (it prefixes the server's tools)"
        ));
    }
    let expand = |text: &str| expand(text, env).map_err(|why| format!("server {name:?}: {why}"));
    let timeout = match entry.timeout {
        None => DEFAULT_CALL_TIMEOUT,
        Some(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 => {
            Duration::from_secs_f64(seconds)
        }
        Some(seconds) => {
            return Err(format!(
                "server {name:?}: timeout {seconds} is not a number of seconds in (0, 3600]"
            ));
        }
    };
    let kind = entry.kind.as_deref().map(str::to_ascii_lowercase);
    let transport = match (kind.as_deref(), entry.command, entry.url) {
        (Some("sse"), ..) => {
            return Err(format!(
                "server {name:?}: the old HTTP+SSE transport is not supported; \
                 servers of today speak streamable HTTP (\"type\": \"http\")"
            ));
        }
        (None | Some("stdio"), Some(command), None) => {
            if command.trim().is_empty() {
                return Err(format!("server {name:?}: \"command\" is empty"));
            }
            let sandbox = entry.sandbox.unwrap_or(SandboxEntry {
                network: None,
                read: Vec::new(),
                write: Vec::new(),
            });
            let paths = |list: Vec<String>| -> Result<Vec<PathBuf>, String> {
                list.iter()
                    .map(|p| {
                        let p = PathBuf::from(expand(p)?);
                        if p.is_absolute() {
                            Ok(p)
                        } else {
                            Err(format!(
                                "server {name:?}: sandbox path {} is not absolute",
                                p.display()
                            ))
                        }
                    })
                    .collect()
            };
            Transport::Stdio {
                command: expand(&command)?,
                args: entry
                    .args
                    .iter()
                    .map(|a| expand(a))
                    .collect::<Result<_, _>>()?,
                env: entry
                    .env
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(v)?)))
                    .collect::<Result<_, String>>()?,
                cwd: entry
                    .cwd
                    .map(|c| expand(&c).map(PathBuf::from))
                    .transpose()?,
                sandbox: SandboxOptions {
                    network: sandbox.network.unwrap_or(true),
                    read: paths(sandbox.read)?,
                    write: paths(sandbox.write)?,
                },
            }
        }
        (
            None | Some("http") | Some("streamable-http") | Some("streamablehttp"),
            None,
            Some(url),
        ) => {
            let url = expand(&url)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "server {name:?}: url {url:?} is not an http(s) URL"
                ));
            }
            Transport::Http {
                url,
                headers: entry
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(v)?)))
                    .collect::<Result<_, String>>()?,
            }
        }
        (_, Some(_), Some(_)) => {
            return Err(format!(
                "server {name:?}: give either \"command\" (stdio) or \"url\" (HTTP), not both"
            ));
        }
        (Some(other), ..) if !matches!(other, "stdio" | "http" | "streamable-http") => {
            return Err(format!(
                "server {name:?}: unknown \"type\" {other:?} (stdio or http)"
            ));
        }
        _ => {
            return Err(format!(
                "server {name:?}: needs \"command\" (stdio) or \"url\" (HTTP)"
            ));
        }
    };
    Ok(ServerConfig {
        name: name.to_owned(),
        transport,
        disabled: entry.disabled,
        timeout,
    })
}

/// `text` with every `${NAME}` replaced by `env(NAME)`; a missing variable
/// is an error (an empty token would fail later and less clearly).
fn expand(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed \"${{\" in {text:?}"));
        };
        let name = &after[..end];
        match env(name) {
            Some(value) => out.push_str(&value),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<McpConfig, AgentError> {
        McpConfig::parse(Path::new("mcp.json"), text, |name| {
            (name == "TOKEN").then(|| "s3cret".to_owned())
        })
    }

    #[test]
    fn the_shape_other_clients_write_is_read() {
        let config = parse(
            r#"{"mcpServers": {
                "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
                          "env": {"KEY": "${TOKEN}"}, "autoApprove": []},
                "remote": {"type": "http", "url": "https://mcp.example.com/mcp",
                           "headers": {"Authorization": "Bearer ${TOKEN}"}, "timeout": 5},
                "off": {"command": "x", "disabled": true, "sandbox": {"network": false, "read": ["/opt/x"]}}
            }, "otherClientKey": 1}"#,
        )
        .unwrap();
        let names: Vec<_> = config.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["files", "off", "remote"]);
        let Transport::Stdio {
            command,
            args,
            env,
            sandbox,
            ..
        } = &config.servers[0].transport
        else {
            panic!("files is stdio");
        };
        assert_eq!(command, "npx");
        assert_eq!(args.len(), 3);
        assert_eq!(env["KEY"], "s3cret");
        assert!(sandbox.network);
        assert_eq!(config.servers[0].timeout, DEFAULT_CALL_TIMEOUT);
        assert!(config.servers[1].disabled);
        let Transport::Stdio { sandbox, .. } = &config.servers[1].transport else {
            panic!("off is stdio");
        };
        assert!(!sandbox.network);
        assert_eq!(sandbox.read, [PathBuf::from("/opt/x")]);
        let Transport::Http { url, headers } = &config.servers[2].transport else {
            panic!("remote is http");
        };
        assert_eq!(url, "https://mcp.example.com/mcp");
        assert_eq!(headers["Authorization"], "Bearer s3cret");
        assert_eq!(config.servers[2].timeout, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                r#"{"mcpServers": {"a__b": {"command": "x"}}}"#,
                "server name",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "url": "http://h"}}}"#,
                "not both",
            ),
            (r#"{"mcpServers": {"a": {}}}"#, "needs \"command\""),
            (
                r#"{"mcpServers": {"a": {"type": "sse", "url": "http://h"}}}"#,
                "HTTP+SSE",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "ftp://h"}}}"#,
                "not an http",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "${NOPE}"}}}"#,
                "NOPE is not set",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "timeout": -1}}}"#,
                "timeout",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "sandbox": {"read": ["rel"]}}}}"#,
                "not absolute",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": 5}}}"#,
                "invalid type",
            ),
        ] {
            let config = parse(text).unwrap();
            assert!(config.servers.is_empty(), "{text}");
            let reason = &config.invalid[0].reason;
            assert!(
                reason.starts_with("mcp_config_invalid: mcp.json: "),
                "{reason}"
            );
            assert!(reason.contains(needle), "{text}: {reason}");
        }
        let error = parse(r#"{"mcpServers": [1]"#).unwrap_err();
        assert_eq!(error.code(), "mcp_config_invalid");
        assert!(error.to_string().contains("mcp.json"), "{error}");
    }

    #[test]
    fn one_bad_entry_spoils_only_itself() {
        let config = parse(
            r#"{"mcpServers": {
                "good": {"command": "x"},
                "old": {"type": "sse", "url": "http://h/sse"}
            }}"#,
        )
        .unwrap();
        assert_eq!(config.servers[0].name, "good");
        assert_eq!(config.invalid.len(), 1);
        assert_eq!(
            (config.invalid[0].name.as_str(), config.invalid[0].transport),
            ("old", "http")
        );
    }

    #[test]
    fn a_missing_file_is_no_servers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            McpConfig::load(&dir.path().join("mcp.json"))
                .unwrap()
                .is_none()
        );
    }
}
