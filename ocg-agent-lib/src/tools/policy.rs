//! [`ToolPolicy`]: which tools the model gets and how far they may reach.

use std::path::PathBuf;
use std::time::Duration;

use ocg_core::config::{ConfigError, RawConfig, parse_bool};

/// The groups tools are allowed or denied by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolGroup {
    /// Files in the workspace: `read`, `write`, `edit`, `apply_patch`,
    /// `list`, `glob`, `grep`.
    Fs,
    /// Programs: `exec`, `process`.
    Exec,
    /// The network: `web_fetch`.
    Web,
    /// Long-term memory: `memory_*`.
    Memory,
    /// Other sessions: `sessions_list`, `session_history`.
    Sessions,
    /// Scheduled jobs: `schedule`.
    Schedule,
    /// The tools of MCP servers, `<server>__<tool>` (each server's name is
    /// also a policy name for all its tools).
    Mcp,
}

impl ToolGroup {
    /// Every group.
    pub const ALL: [ToolGroup; 7] = [
        ToolGroup::Fs,
        ToolGroup::Exec,
        ToolGroup::Web,
        ToolGroup::Memory,
        ToolGroup::Sessions,
        ToolGroup::Schedule,
        ToolGroup::Mcp,
    ];

    /// The group's name in `OCG_TOOLS_ALLOW` / `OCG_TOOLS_DENY`.
    pub fn name(self) -> &'static str {
        match self {
            ToolGroup::Fs => "fs",
            ToolGroup::Exec => "exec",
            ToolGroup::Web => "web",
            ToolGroup::Memory => "memory",
            ToolGroup::Sessions => "sessions",
            ToolGroup::Schedule => "schedule",
            ToolGroup::Mcp => "mcp",
        }
    }
}

/// Programs `exec` may run when `OCG_EXEC_ALLOW` is not set: ones that read
/// and print, and cannot start other programs. Those missing on the machine
/// are left out.
pub const DEFAULT_EXEC_ALLOW: &[&str] = &[
    "/usr/bin/cat",
    "/usr/bin/date",
    "/usr/bin/diff",
    "/usr/bin/du",
    "/usr/bin/echo",
    "/usr/bin/false",
    "/usr/bin/grep",
    "/usr/bin/head",
    "/usr/bin/ls",
    "/usr/bin/pwd",
    "/usr/bin/sort",
    "/usr/bin/stat",
    "/usr/bin/tail",
    "/usr/bin/true",
    "/usr/bin/uname",
    "/usr/bin/uniq",
    "/usr/bin/wc",
];

/// How `exec` and `process` run programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecSandbox {
    /// Confined by the kernel through `helper sandbox-exec …` (the agent
    /// binary; see `ocg_process::sandbox`): the workspace to write, system
    /// directories to read, nothing else; no network unless `network`.
    Kernel {
        /// The helper program (`ocg-agent`).
        helper: PathBuf,
        /// Whether programs may open network sockets (`OCG_EXEC_NETWORK`).
        network: bool,
    },
    /// No helper is configured: programs are refused (the default of a
    /// policy built in code; `ocg-agent` configures itself).
    Unconfigured,
    /// Unconfined, by the operator's explicit `OCG_EXEC_SANDBOX=off`.
    Off,
}

/// What the tools may do. Built from config by [`ToolPolicy::from_config`];
/// [`Default`] is the built-in defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolPolicy {
    /// Tool or group names offered (`None`: all).
    pub allow: Option<Vec<String>>,
    /// Tool or group names never offered; wins over `allow`.
    pub deny: Vec<String>,
    /// Programs `exec` and `process` may run, canonicalized.
    pub exec_allow: Vec<PathBuf>,
    /// Whether `exec` may run `sh -c` (which the allow-list cannot see into).
    pub exec_shell: bool,
    /// An `exec` call's timeout when it names none.
    pub exec_timeout: Duration,
    /// The largest timeout an `exec` call may ask for.
    pub exec_max_timeout: Duration,
    /// Bytes of a tool result handed to the model (head and tail kept).
    pub output_max: usize,
    /// Whether `web_fetch` may reach loopback, private, link-local and
    /// metadata addresses.
    pub web_allow_private: bool,
    /// How programs run.
    pub sandbox: ExecSandbox,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        ToolPolicy {
            allow: None,
            deny: Vec::new(),
            exec_allow: DEFAULT_EXEC_ALLOW
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect(),
            exec_shell: false,
            exec_timeout: Duration::from_secs(30),
            exec_max_timeout: Duration::from_secs(600),
            output_max: 32 * 1024,
            web_allow_private: false,
            sandbox: ExecSandbox::Unconfigured,
        }
    }
}

fn names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ToolPolicy {
    /// Read `OCG_TOOLS_ALLOW`, `OCG_TOOLS_DENY`, `OCG_EXEC_ALLOW`,
    /// `OCG_EXEC_SHELL`, `OCG_EXEC_TIMEOUT`, `OCG_EXEC_MAX_TIMEOUT`,
    /// `OCG_TOOL_OUTPUT_MAX`, `OCG_WEB_ALLOW_PRIVATE`, `OCG_EXEC_SANDBOX` and
    /// `OCG_EXEC_NETWORK`. Program paths must be absolute and exist; they are
    /// canonicalized, so a symlink allows its target. Tool names are checked
    /// by the registry. The sandbox helper is this very program
    /// (`std::env::current_exe`), which must answer `sandbox-exec` by calling
    /// `ocg_process::sandbox::helper_main`, as `ocg-agent` does.
    pub fn from_config(raw: &RawConfig) -> Result<Self, ConfigError> {
        let defaults = ToolPolicy::default();
        let exec_allow = match raw.parse("OCG_EXEC_ALLOW", |value| {
            names(value)
                .into_iter()
                .map(|path| {
                    if !path.starts_with('/') {
                        return Err(format!("{path:?} is not an absolute path"));
                    }
                    std::fs::canonicalize(&path).map_err(|e| format!("{path}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        })? {
            Some(paths) => paths,
            None => defaults.exec_allow,
        };
        let exec_timeout = raw
            .number_in("OCG_EXEC_TIMEOUT", 1u64..=86_400)?
            .map_or(defaults.exec_timeout, Duration::from_secs);
        let exec_max_timeout = raw
            .number_in("OCG_EXEC_MAX_TIMEOUT", 1u64..=86_400)?
            .map_or(defaults.exec_max_timeout, Duration::from_secs);
        Ok(ToolPolicy {
            allow: raw.get("OCG_TOOLS_ALLOW").map(|s| names(&s.value)),
            deny: raw
                .get("OCG_TOOLS_DENY")
                .map(|s| names(&s.value))
                .unwrap_or_default(),
            exec_allow,
            exec_shell: raw
                .parse("OCG_EXEC_SHELL", parse_bool)?
                .unwrap_or(defaults.exec_shell),
            exec_timeout,
            exec_max_timeout: exec_max_timeout.max(exec_timeout),
            output_max: raw
                .number_in("OCG_TOOL_OUTPUT_MAX", 1024usize..=16 * 1024 * 1024)?
                .unwrap_or(defaults.output_max),
            web_allow_private: raw
                .parse("OCG_WEB_ALLOW_PRIVATE", parse_bool)?
                .unwrap_or(defaults.web_allow_private),
            sandbox: if raw.parse("OCG_EXEC_SANDBOX", parse_bool)?.unwrap_or(true) {
                match std::env::current_exe() {
                    Ok(helper) => ExecSandbox::Kernel {
                        helper,
                        network: raw.parse("OCG_EXEC_NETWORK", parse_bool)?.unwrap_or(false),
                    },
                    Err(_) => ExecSandbox::Unconfigured,
                }
            } else {
                ExecSandbox::Off
            },
        })
    }

    /// Whether a tool named `name` in `group` is offered.
    pub fn allows(&self, name: &str, group: ToolGroup) -> bool {
        self.offers(&[name, group.name()])
    }

    /// Whether the tool `name` (`<server>__<tool>`) of the MCP server
    /// `server` is offered: by its full name, its server's name or the
    /// group `mcp`.
    pub fn allows_mcp(&self, server: &str, name: &str) -> bool {
        self.offers(&[name, server, ToolGroup::Mcp.name()])
    }

    /// Whether a tool known by any of `names` is offered: none of them
    /// denied, and one of them allowed (or no allow-list).
    fn offers(&self, names: &[&str]) -> bool {
        let listed = |list: &[String]| list.iter().any(|n| names.contains(&n.as_str()));
        !listed(&self.deny) && self.allow.as_deref().is_none_or(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_over_allow_and_groups_count() {
        let policy = ToolPolicy {
            allow: Some(vec!["fs".into(), "exec".into()]),
            deny: vec!["write".into()],
            ..ToolPolicy::default()
        };
        assert!(policy.allows("read", ToolGroup::Fs));
        assert!(!policy.allows("write", ToolGroup::Fs));
        assert!(policy.allows("exec", ToolGroup::Exec));
        assert!(!policy.allows("web_fetch", ToolGroup::Web));
        assert!(ToolPolicy::default().allows("web_fetch", ToolGroup::Web));
    }

    #[test]
    fn mcp_tools_are_named_by_tool_server_or_group() {
        let policy = ToolPolicy {
            allow: Some(vec!["files".into(), "web__search".into()]),
            deny: vec!["files__delete".into()],
            ..ToolPolicy::default()
        };
        assert!(policy.allows_mcp("files", "files__read"));
        assert!(!policy.allows_mcp("files", "files__delete"));
        assert!(policy.allows_mcp("web", "web__search"));
        assert!(!policy.allows_mcp("web", "web__fetch"));
        let none = ToolPolicy {
            deny: vec!["mcp".into()],
            ..ToolPolicy::default()
        };
        assert!(!none.allows_mcp("files", "files__read"));
        assert!(ToolPolicy::default().allows_mcp("files", "files__read"));
    }

    #[test]
    fn default_exec_allow_list_is_canonical() {
        let policy = ToolPolicy::default();
        assert!(!policy.exec_allow.is_empty());
        for path in &policy.exec_allow {
            assert_eq!(&std::fs::canonicalize(path).unwrap(), path);
        }
    }
}
