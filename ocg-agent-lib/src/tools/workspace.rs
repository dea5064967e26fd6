//! [`Workspace`]: the one directory tree the tools may touch.

use std::path::{Component, Path, PathBuf};

use crate::AgentError;

/// The tools' root directory, canonicalized, with the paths inside it that
/// stay out of reach (the data directory, `env.config`, the database).
///
/// Every path a tool gets is resolved here: relative paths from the root,
/// absolute ones only when inside it. A `..` component is refused outright;
/// symlinks are followed and the result must still be inside the root.
/// Files being created are checked through their deepest existing ancestor.
///
/// Between this check and the use of the path, a program run by `exec` could
/// swap a directory for a symlink; writes therefore never follow a symlink
/// in the last component (see the `write` tool), and `docs/tools.md` spells
/// out the rest of that window.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    protected: Vec<PathBuf>,
}

fn refused(message: String) -> AgentError {
    AgentError::tool("path_outside_workspace", message)
}

impl Workspace {
    /// The workspace at `root`, created (mode 0700) when missing. `protected`
    /// paths (files or directories) are refused even when inside the root;
    /// a protected directory that contains the root protects only what is
    /// outside the root.
    pub fn new(root: &Path, protected: &[PathBuf]) -> Result<Self, AgentError> {
        let io = |source| AgentError::Io {
            path: root.to_owned(),
            source,
        };
        if !root.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(io)?;
        }
        let root = std::fs::canonicalize(root).map_err(io)?;
        if !root.is_dir() {
            return Err(AgentError::InvalidInput(format!(
                "the workspace {} is not a directory",
                root.display()
            )));
        }
        let protected = protected
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .filter(|p| !root.starts_with(p))
            .collect();
        Ok(Workspace { root, protected })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `path` (canonical) is one of the protected paths or inside one.
    pub fn is_protected(&self, path: &Path) -> bool {
        self.protected.iter().any(|p| path.starts_with(p))
    }

    /// `path` as shown to the model: relative to the root.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// The path as given, joined to the root, with `..` refused.
    fn lexical(&self, path: &str) -> Result<PathBuf, AgentError> {
        if path.contains('\0') {
            return Err(AgentError::tool(
                "invalid_path",
                "the path contains a NUL byte",
            ));
        }
        let given = Path::new(if path.trim().is_empty() { "." } else { path });
        if given.components().any(|c| c == Component::ParentDir) {
            return Err(refused(format!(
                "{path}: `..` is not allowed; paths are relative to the workspace root"
            )));
        }
        Ok(self.root.join(given))
    }

    fn check_inside(&self, asked: &str, real: PathBuf) -> Result<PathBuf, AgentError> {
        if !real.starts_with(&self.root) {
            return Err(refused(format!("{asked}: outside the workspace")));
        }
        if self.is_protected(&real) {
            return Err(AgentError::tool(
                "path_protected",
                format!("{asked}: this path is not reachable through tools"),
            ));
        }
        Ok(real)
    }

    /// Resolve an existing path (symlinks followed).
    pub fn existing(&self, path: &str) -> Result<PathBuf, AgentError> {
        let joined = self.lexical(path)?;
        let real = std::fs::canonicalize(&joined).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                AgentError::tool("not_found", format!("{path}: no such file or directory"))
            }
            _ => AgentError::tool("io_error", format!("{path}: {error}")),
        })?;
        self.check_inside(path, real)
    }

    /// Resolve a path that may not exist yet: its deepest existing ancestor
    /// is canonicalized and must be inside; an existing final symlink must
    /// point inside. Returns the path to create or replace.
    pub fn writable(&self, path: &str) -> Result<PathBuf, AgentError> {
        let joined = self.lexical(path)?;
        if joined.symlink_metadata().is_ok() {
            let real = self.existing(path)?;
            return Ok(real);
        }
        let mut ancestor = joined.as_path();
        let mut rest = Vec::new();
        while ancestor.symlink_metadata().is_err() {
            match (ancestor.parent(), ancestor.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    ancestor = parent;
                }
                _ => return Err(refused(format!("{path}: no existing ancestor"))),
            }
        }
        let mut real = std::fs::canonicalize(ancestor)
            .map_err(|error| AgentError::tool("io_error", format!("{path}: {error}")))?;
        if !real.is_dir() {
            return Err(AgentError::tool(
                "not_a_directory",
                format!("{path}: {} is not a directory", self.display(&real)),
            ));
        }
        real.extend(rest.iter().rev());
        self.check_inside(path, real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("indir")).unwrap();
        std::fs::write(root.join("env.config"), "K=V").unwrap();
        let ws = Workspace::new(&root, &[root.join("env.config"), dir.path().to_owned()]).unwrap();
        (dir, ws)
    }

    fn code(result: Result<PathBuf, AgentError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn paths_resolve_inside_and_escapes_are_refused() {
        let (dir, ws) = setup();
        assert_eq!(ws.display(&ws.existing("sub/a.txt").unwrap()), "sub/a.txt");
        assert_eq!(
            ws.display(&ws.existing("indir/a.txt").unwrap()),
            "sub/a.txt"
        );
        assert_eq!(ws.display(&ws.existing("").unwrap()), ".");
        let absolute = ws.root().join("sub/a.txt");
        assert!(ws.existing(absolute.to_str().unwrap()).is_ok());

        assert_eq!(code(ws.existing("../secret")), "path_outside_workspace");
        assert_eq!(
            code(ws.existing("sub/../../secret")),
            "path_outside_workspace"
        );
        assert_eq!(code(ws.existing("out")), "path_outside_workspace");
        assert_eq!(code(ws.existing("outdir/secret")), "path_outside_workspace");
        let outside = dir.path().join("secret");
        assert_eq!(
            code(ws.existing(outside.to_str().unwrap())),
            "path_outside_workspace"
        );
        assert_eq!(code(ws.existing("/etc/passwd")), "path_outside_workspace");
        assert_eq!(code(ws.existing("env.config")), "path_protected");
        assert_eq!(code(ws.existing("missing")), "not_found");
    }

    #[test]
    fn new_files_are_checked_through_their_existing_ancestor() {
        let (_dir, ws) = setup();
        assert_eq!(
            ws.display(&ws.writable("new/deeper/file.txt").unwrap()),
            "new/deeper/file.txt"
        );
        assert_eq!(
            ws.display(&ws.writable("indir/n.txt").unwrap()),
            "sub/n.txt"
        );
        assert_eq!(code(ws.writable("outdir/n.txt")), "path_outside_workspace");
        assert_eq!(code(ws.writable("out")), "path_outside_workspace");
        assert_eq!(code(ws.writable("sub/a.txt/x")), "not_a_directory");
    }
}
