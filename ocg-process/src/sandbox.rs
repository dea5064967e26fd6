//! Confining a program by the kernel: how the agent's `exec` and `process`
//! tools run what the model asks for.
//!
//! Checking argument strings cannot keep a program inside the workspace
//! (programs take paths in too many forms), so the program itself is
//! confined. The agent starts a small helper, its own binary in
//! `sandbox-exec` mode ([`helper_args`] builds its command line), which
//! confines itself and then `exec`s the program:
//!
//! - **Landlock** (Linux 5.13+): the file system is the system directories
//!   ([`SYSTEM_DIRS`]) to read and execute, a few devices, and the workspace
//!   to read and write. Nothing else is reachable: not the install's data
//!   dir, config, logs or pid dir, not `/tmp`, not `/proc` (so no other
//!   process's `environ`). With network off, TCP `bind` and `connect` are
//!   refused too. Signals to processes outside the sandbox and abstract Unix
//!   sockets are scoped where the kernel supports it (ABI 6).
//! - **seccomp**: `socket(AF_UNIX)` is refused always, because Landlock does
//!   not cover `connect()` to a path socket (the agent's own socket is one);
//!   with network off, so are `AF_INET`, `AF_INET6`, `AF_NETLINK` and
//!   `AF_PACKET`, which also closes UDP.
//! - `PR_SET_PDEATHSIG` = SIGKILL: the program dies with the agent, even after
//!   a `kill -9` of the agent.
//!
//! Both are inherited by everything the program starts and cannot be undone
//! (`no_new_privs`). Where the kernel offers no Landlock, the helper refuses
//! to run the program.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The first argument that puts the agent binary in helper mode.
pub const HELPER_MODE: &str = "sandbox-exec";

/// Directories a confined program may read and execute from, when they exist.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// Devices a confined program may read and write.
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// What a confined program may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Read, write, create and execute below these (the workspace).
    pub writable: Vec<PathBuf>,
    /// Read and execute below these (system directories, the program).
    pub readable: Vec<PathBuf>,
    /// Whether the program may open network sockets.
    pub network: bool,
}

/// Why a program could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel has no Landlock (or it is disabled).
    #[error(
        "this kernel does not confine programs (Landlock is missing or disabled); \
         programs are not run unconfined unless OCG_EXEC_SANDBOX=off"
    )]
    Unsupported,
    /// Landlock refused the rules.
    #[error("landlock: {0}")]
    Landlock(String),
    /// seccomp refused the filter.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// The helper's command line is wrong.
    #[error("sandbox-exec: {0}")]
    Usage(String),
}

/// The helper's arguments (after the helper program itself) to run
/// `program` as `arg0 args…` under `confinement`, in the working directory
/// the helper is started in.
pub fn helper_args(
    confinement: &Confinement,
    program: &Path,
    arg0: &str,
    args: &[String],
) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![HELPER_MODE.into()];
    for dir in &confinement.writable {
        out.extend(["--write".into(), dir.into()]);
    }
    for dir in &confinement.readable {
        out.extend(["--read".into(), dir.into()]);
    }
    if confinement.network {
        out.push("--network".into());
    }
    out.extend(["--arg0".into(), arg0.into()]);
    out.push("--".into());
    out.push(program.into());
    out.extend(args.iter().map(OsString::from));
    out
}

/// The main of helper mode: `args` are what follows [`HELPER_MODE`]. Confines
/// this process and `exec`s the program; returns only on failure, with the
/// error to report (exit status 126 is the convention).
pub fn helper_main(args: impl Iterator<Item = OsString>) -> SandboxError {
    let mut confinement = Confinement {
        writable: Vec::new(),
        readable: Vec::new(),
        network: false,
    };
    let mut arg0 = None;
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        match flag.to_str() {
            Some("--write") => confinement.writable.extend(args.next().map(PathBuf::from)),
            Some("--read") => confinement.readable.extend(args.next().map(PathBuf::from)),
            Some("--network") => confinement.network = true,
            Some("--arg0") => arg0 = args.next(),
            Some("--") => break,
            _ => return SandboxError::Usage(format!("unexpected argument {flag:?}")),
        }
    }
    let Some(program) = args.next() else {
        return SandboxError::Usage("no program after --".into());
    };
    // Dies with the agent. Set before confining: Landlock and seccomp do not
    // change credentials, so it survives to the exec.
    if let Err(error) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return SandboxError::Usage(format!("prctl: {error}"));
    }
    if let Err(error) = confine(&confinement) {
        return error;
    }
    let mut command = std::process::Command::new(&program);
    command.args(args);
    if let Some(arg0) = arg0 {
        command.arg0(arg0);
    }
    let error = command.exec();
    SandboxError::Usage(format!(
        "cannot run {}: {error}",
        Path::new(&program).display()
    ))
}

/// Whether `helper` can confine a program on this machine: runs `true`
/// through it. The error says why not (the helper's own words).
pub fn probe(helper: &Path) -> Result<(), String> {
    let confinement = Confinement {
        writable: Vec::new(),
        readable: SYSTEM_DIRS.iter().map(PathBuf::from).collect(),
        network: false,
    };
    let truth = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("no true(1) to probe the sandbox with")?;
    let output = std::process::Command::new(helper)
        .args(helper_args(&confinement, truth, "true", &[]))
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Confine the calling thread and what it `exec`s (see the module docs).
pub fn confine(confinement: &Confinement) -> Result<(), SandboxError> {
    landlock_rules(confinement)?;
    seccomp_filter(confinement.network)
}

fn landlock_rules(confinement: &Confinement) -> Result<(), SandboxError> {
    let error = |e: &dyn std::fmt::Display| SandboxError::Landlock(e.to_string());
    let abi = ABI::V6;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| error(&e))?;
    if !confinement.network {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| error(&e))?;
    }
    let ruleset = ruleset
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| error(&e))?;
    let mut created = ruleset.create().map_err(|e| error(&e))?;
    let rules = [
        (&confinement.writable, AccessFs::from_all(abi)),
        (&confinement.readable, AccessFs::from_read(abi)),
    ];
    for (paths, access) in rules {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else {
                continue; // a directory that does not exist grants nothing
            };
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(|e| error(&e))?;
        }
    }
    for device in DEVICES {
        if let Ok(fd) = PathFd::new(device) {
            created = created
                .add_rule(PathBeneath::new(
                    fd,
                    AccessFs::ReadFile | AccessFs::WriteFile,
                ))
                .map_err(|e| error(&e))?;
        }
    }
    let status = created.restrict_self().map_err(|e| error(&e))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(SandboxError::Unsupported);
    }
    Ok(())
}

fn seccomp_filter(network: bool) -> Result<(), SandboxError> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let error = |e: &dyn std::fmt::Display| SandboxError::Seccomp(e.to_string());
    let mut refused = vec![nix::libc::AF_UNIX];
    if !network {
        refused.extend([
            nix::libc::AF_INET,
            nix::libc::AF_INET6,
            nix::libc::AF_NETLINK,
            nix::libc::AF_PACKET,
        ]);
    }
    let rules = refused
        .into_iter()
        .map(|family| {
            let domain = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                u64::try_from(family).unwrap_or(u64::MAX),
            )
            .map_err(|e| error(&e))?;
            SeccompRule::new(vec![domain]).map_err(|e| error(&e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| error(&e))?;
    let filter = SeccompFilter::new(
        [(nix::libc::SYS_socket, rules)].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(nix::libc::EACCES).unwrap_or(13)),
        arch,
    )
    .map_err(|e| error(&e))?;
    let program: BpfProgram = filter.try_into().map_err(|e| error(&e))?;
    seccompiler::apply_filter(&program).map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_arguments_round_trip_in_order() {
        let confinement = Confinement {
            writable: vec!["/w".into()],
            readable: vec!["/usr".into(), "/etc".into()],
            network: true,
        };
        let args = helper_args(
            &confinement,
            Path::new("/usr/bin/grep"),
            "grep",
            &["-r".into(), "--".into(), "x".into()],
        );
        let text: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            text.join(" "),
            "sandbox-exec --write /w --read /usr --read /etc --network --arg0 grep -- /usr/bin/grep -r -- x"
        );
        // Helper mode rejects what it does not know before confining anything.
        let error = helper_main(["--bogus".into()].into_iter());
        assert!(error.to_string().contains("unexpected argument"), "{error}");
        let error = helper_main(["--".into()].into_iter());
        assert!(error.to_string().contains("no program"), "{error}");
    }
}
