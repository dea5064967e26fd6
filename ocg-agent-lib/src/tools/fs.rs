//! File tools inside the [`Workspace`]: `read`, `write`, `edit`, `list`,
//! `glob`, `grep`.
//!
//! Files are written atomically (a temporary file in the same directory,
//! synced, then renamed over the target), so a crash never leaves half a
//! file. Blocking file-system work runs on tokio's blocking pool.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolGroup, Workspace, arguments};
use crate::AgentError;

/// The largest file `read`, `edit` and `grep` look into.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// The most content `write` accepts in one call.
pub const MAX_WRITE_BYTES: usize = 10 * 1024 * 1024;
/// Lines `read` returns when no limit is given.
pub const DEFAULT_READ_LINES: usize = 2000;
/// Entries `list` and `glob` return at most.
pub const MAX_ENTRIES: usize = 1000;
/// Files `glob` and `grep` visit at most.
pub const MAX_VISITED: usize = 100_000;
/// Files over this size are skipped by `grep`.
pub const MAX_GREP_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AgentError::Internal(format!("file task failed: {error}")))?
}

fn io_error(shown: &str, error: std::io::Error) -> AgentError {
    AgentError::tool("io_error", format!("{shown}: {error}"))
}

/// Read a whole text file (size-capped, binary refused).
fn read_text(path: &Path, shown: &str) -> Result<String, AgentError> {
    let metadata = std::fs::metadata(path).map_err(|e| io_error(shown, e))?;
    if !metadata.is_file() {
        return Err(AgentError::tool(
            "not_a_file",
            format!("{shown} is not a regular file"),
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(AgentError::tool(
            "file_too_large",
            format!(
                "{shown} has {} bytes; the limit is {MAX_FILE_BYTES} (use grep to find what you need)",
                metadata.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| io_error(shown, e))?;
    if looks_binary(&bytes) {
        return Err(AgentError::tool(
            "binary_file",
            format!("{shown} is a binary file"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| AgentError::tool("binary_file", format!("{shown} is not UTF-8 text")))
}

/// A NUL byte in the first 8 KiB: how `git` and `grep` tell binary files.
fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

/// `content` in a synced temporary file beside `path`, with the mode of the
/// file it will replace (new files get 0644 under the process umask): ready
/// to be renamed over `path`.
pub(crate) fn stage(path: &Path, content: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".ocg-write-")
        .tempfile_in(parent)?;
    file.write_all(content)?;
    file.as_file().sync_all()?;
    if let Ok(existing) = std::fs::metadata(path) {
        file.as_file().set_permissions(existing.permissions())?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(file)
}

/// Replace `path` with `content` atomically ([`stage`], then rename).
pub(crate) fn write_atomically(path: &Path, content: &[u8]) -> std::io::Result<()> {
    stage(path, content)?.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Create the directories leading to `path` (already checked to be inside).
fn create_parents(path: &Path, shown: &str) -> Result<(), AgentError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(shown, e))?;
    }
    Ok(())
}

/// `read`: a text file, by lines.
#[derive(Debug, Clone)]
pub struct ReadTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

#[async_trait]
impl Tool for ReadTool {
    fn name(&self) -> &'static str {
        "read"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Read a text file of the workspace. Returns up to `limit` lines (default 2000) \
         from line `offset` (1-based, default 1); a note at the end says when more lines follow."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace root"},
                "offset": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)"},
                "limit": {"type": "integer", "minimum": 1, "description": "How many lines to return"}
            },
            "required": ["path"]
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: ReadArgs = arguments(self.name(), args)?;
        let path = self.0.existing(&args.path)?;
        let shown = self.0.display(&path);
        let text = blocking(move || read_text(&path, &shown)).await?;
        let offset = args.offset.unwrap_or(1).max(1);
        let limit = args.limit.unwrap_or(DEFAULT_READ_LINES).max(1);
        let total = text.lines().count();
        if total == 0 {
            return Ok("(empty file)".into());
        }
        if offset > total {
            return Err(AgentError::tool(
                "invalid_arguments",
                format!("offset {offset} is past the end ({total} lines)"),
            ));
        }
        let mut out: String = text
            .lines()
            .skip(offset - 1)
            .take(limit)
            .collect::<Vec<_>>()
            .join("\n");
        let last = (offset - 1 + limit).min(total);
        if offset > 1 || last < total {
            out.push_str(&format!("\n[lines {offset}-{last} of {total}"));
            if last < total {
                out.push_str(&format!("; continue with offset {}", last + 1));
            }
            out.push(']');
        }
        Ok(out)
    }
}

/// `write`: create or replace a file (atomically), or append to it.
#[derive(Debug, Clone)]
pub struct WriteTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
    #[serde(default)]
    append: bool,
}

#[async_trait]
impl Tool for WriteTool {
    fn name(&self) -> &'static str {
        "write"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Create or overwrite a file of the workspace with `content` (parent directories are \
         created). With `append: true`, add `content` to the end of the file instead."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path, relative to the workspace root"},
                "content": {"type": "string", "description": "The full new content (or the text to append)"},
                "append": {"type": "boolean", "description": "Append instead of replacing"}
            },
            "required": ["path", "content"]
        })
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: WriteArgs = arguments(self.name(), args)?;
        if args.content.len() > MAX_WRITE_BYTES {
            return Err(AgentError::tool(
                "content_too_large",
                format!(
                    "{} bytes is over the {MAX_WRITE_BYTES}-byte limit of one write",
                    args.content.len()
                ),
            ));
        }
        let path = self.0.writable(&args.path)?;
        let shown = self.0.display(&path);
        if path.is_dir() {
            return Err(AgentError::tool(
                "is_a_directory",
                format!("{shown} is a directory"),
            ));
        }
        blocking(move || {
            create_parents(&path, &shown)?;
            let bytes = args.content.len();
            if args.append {
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| io_error(&shown, e))?;
                file.write_all(args.content.as_bytes())
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error(&shown, e))?;
                Ok(format!("appended {bytes} bytes to {shown}"))
            } else {
                write_atomically(&path, args.content.as_bytes())
                    .map_err(|e| io_error(&shown, e))?;
                Ok(format!("wrote {bytes} bytes to {shown}"))
            }
        })
        .await
    }
}

/// `edit`: replace an exact snippet that occurs once.
#[derive(Debug, Clone)]
pub struct EditTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old_text: String,
    new_text: String,
    #[serde(default)]
    replace_all: bool,
}

#[async_trait]
impl Tool for EditTool {
    fn name(&self) -> &'static str {
        "edit"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Replace `old_text` with `new_text` in a file. `old_text` must match exactly (spaces and \
         line breaks included) and occur exactly once, unless `replace_all` is true; include \
         enough surrounding lines to make it unique."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string", "description": "Exact text to replace"},
                "new_text": {"type": "string", "description": "Replacement text"},
                "replace_all": {"type": "boolean", "description": "Replace every occurrence"}
            },
            "required": ["path", "old_text", "new_text"]
        })
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: EditArgs = arguments(self.name(), args)?;
        if args.old_text.is_empty() {
            return Err(AgentError::tool(
                "invalid_arguments",
                "old_text is empty; use write to create a file",
            ));
        }
        let path = self.0.existing(&args.path)?;
        let shown = self.0.display(&path);
        blocking(move || {
            let text = read_text(&path, &shown)?;
            let count = text.matches(&args.old_text).count();
            match count {
                0 => {
                    let hint = if text.contains(args.old_text.trim()) {
                        " (it occurs with different surrounding whitespace)"
                    } else {
                        ""
                    };
                    return Err(AgentError::tool(
                        "no_match",
                        format!("old_text was not found in {shown}{hint}; read the file and copy the text exactly"),
                    ));
                }
                1 => {}
                n if !args.replace_all => {
                    return Err(AgentError::tool(
                        "ambiguous_match",
                        format!("old_text occurs {n} times in {shown}; include more surrounding lines to make it unique, or set replace_all"),
                    ));
                }
                _ => {}
            }
            let updated = text.replace(&args.old_text, &args.new_text);
            write_atomically(&path, updated.as_bytes()).map_err(|e| io_error(&shown, e))?;
            Ok(format!(
                "replaced {count} occurrence{} in {shown}",
                if count == 1 { "" } else { "s" }
            ))
        })
        .await
    }
}

/// `list`: a directory's entries.
#[derive(Debug, Clone)]
pub struct ListTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    path: String,
}

#[async_trait]
impl Tool for ListTool {
    fn name(&self) -> &'static str {
        "list"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "List a directory of the workspace (default: the root): directories end with `/`, \
         files show their size, symlinks their target."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Directory, relative to the workspace root"}}
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: ListArgs = arguments(self.name(), args)?;
        let path = self.0.existing(&args.path)?;
        let shown = self.0.display(&path);
        blocking(move || {
            let mut entries: Vec<String> = Vec::new();
            let mut total = 0usize;
            for entry in std::fs::read_dir(&path).map_err(|e| io_error(&shown, e))? {
                let entry = entry.map_err(|e| io_error(&shown, e))?;
                total += 1;
                if entries.len() >= MAX_ENTRIES {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                entries.push(if kind.is_dir() {
                    format!("{name}/")
                } else if kind.is_symlink() {
                    let target = std::fs::read_link(entry.path())
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    format!("{name} -> {target}")
                } else {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    format!("{name} ({size} bytes)")
                });
            }
            entries.sort();
            if entries.is_empty() {
                return Ok(format!("{shown} is empty"));
            }
            let mut out = entries.join("\n");
            if total > entries.len() {
                out.push_str(&format!(
                    "\n[{} more entries not shown]",
                    total - entries.len()
                ));
            }
            Ok(out)
        })
        .await
    }
}

/// Walk `base` without following symlinks, skipping `.git` and protected
/// paths, visiting at most [`MAX_VISITED`] entries; yields files with their
/// path relative to `base`.
fn walk_files<'a>(
    base: &'a Path,
    workspace: &'a Workspace,
) -> impl Iterator<Item = (PathBuf, PathBuf)> + 'a {
    walkdir::WalkDir::new(base)
        .follow_links(false)
        .max_depth(64)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || (e.file_name() != ".git" && !workspace.is_protected(e.path()))
        })
        .take(MAX_VISITED)
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(move |e| {
            let relative = e.path().strip_prefix(base).unwrap_or(e.path()).to_owned();
            (e.into_path(), relative)
        })
}

/// `glob`: files by pattern.
#[derive(Debug, Clone)]
pub struct GlobTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct GlobArgs {
    pattern: String,
    #[serde(default)]
    path: String,
}

fn glob_matcher(pattern: &str) -> Result<globset::GlobMatcher, AgentError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| AgentError::tool("invalid_pattern", format!("bad glob {pattern:?}: {e}")))
}

#[async_trait]
impl Tool for GlobTool {
    fn name(&self) -> &'static str {
        "glob"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Find files whose path (relative to `path`, default the workspace root) matches a glob \
         such as `**/*.rs` or `docs/*.md`. `*` stays within a directory, `**` crosses them."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "Directory to search from"}
            },
            "required": ["pattern"]
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: GlobArgs = arguments(self.name(), args)?;
        let matcher = glob_matcher(&args.pattern)?;
        let base = self.0.existing(&args.path)?;
        let workspace = self.0.clone();
        blocking(move || {
            let mut found: Vec<String> = Vec::new();
            let mut more = 0usize;
            for (full, relative) in walk_files(&base, &workspace) {
                if matcher.is_match(&relative) {
                    if found.len() < MAX_ENTRIES {
                        found.push(workspace.display(&full));
                    } else {
                        more += 1;
                    }
                }
            }
            found.sort();
            if found.is_empty() {
                return Ok(format!("no files match {:?}", args.pattern));
            }
            let mut out = found.join("\n");
            if more > 0 {
                out.push_str(&format!("\n[{more} more matches not shown]"));
            }
            Ok(out)
        })
        .await
    }
}

/// `grep`: lines matching a regular expression.
#[derive(Debug, Clone)]
pub struct GrepTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct GrepArgs {
    pattern: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    ignore_case: bool,
    #[serde(default)]
    max_results: Option<usize>,
}

#[async_trait]
impl Tool for GrepTool {
    fn name(&self) -> &'static str {
        "grep"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Search text files under `path` (a directory or file, default the workspace root) for \
         a regular expression; `glob` limits which files (e.g. `**/*.md`). Returns \
         `path:line: text`. Binary files and files over 2 MiB are skipped."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Regular expression (Rust regex syntax)"},
                "path": {"type": "string"},
                "glob": {"type": "string"},
                "ignore_case": {"type": "boolean"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 1000}
            },
            "required": ["pattern"]
        })
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: GrepArgs = arguments(self.name(), args)?;
        let regex = regex::RegexBuilder::new(&args.pattern)
            .case_insensitive(args.ignore_case)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| AgentError::tool("invalid_pattern", format!("bad regex: {e}")))?;
        let matcher = args.glob.as_deref().map(glob_matcher).transpose()?;
        let max = args.max_results.unwrap_or(100).clamp(1, 1000);
        let base = self.0.existing(&args.path)?;
        let workspace = self.0.clone();
        blocking(move || {
            let files: Vec<(PathBuf, PathBuf)> = if base.is_file() {
                let name = PathBuf::from(base.file_name().unwrap_or_default());
                vec![(base.clone(), name)]
            } else {
                walk_files(&base, &workspace).collect()
            };
            let mut out: Vec<String> = Vec::new();
            let mut more = 0usize;
            for (full, relative) in files {
                if matcher.as_ref().is_some_and(|m| !m.is_match(&relative)) {
                    continue;
                }
                if std::fs::metadata(&full).map_or(true, |m| m.len() > MAX_GREP_FILE_BYTES) {
                    continue;
                }
                let Ok(file) = std::fs::File::open(&full) else {
                    continue;
                };
                let mut reader = std::io::BufReader::new(file);
                if reader.fill_buf().map_or(true, looks_binary) {
                    continue;
                }
                let shown = workspace.display(&full);
                for (number, line) in reader.lines().enumerate() {
                    let Ok(line) = line else { break };
                    if !regex.is_match(&line) {
                        continue;
                    }
                    if out.len() >= max {
                        more += 1;
                        continue;
                    }
                    let mut text: String = line.chars().take(300).collect();
                    if text.len() < line.len() {
                        text.push('…');
                    }
                    out.push(format!("{shown}:{}: {text}", number + 1));
                }
            }
            if out.is_empty() {
                return Ok(format!("no matches for {:?}", args.pattern));
            }
            let mut text = out.join("\n");
            if more > 0 {
                text.push_str(&format!("\n[{more} more matches not shown]"));
            }
            Ok(text)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Arc<Workspace>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(
            root.join("src/main.rs"),
            "fn main() {\n    println!(\"hi\");\n}\n",
        )
        .unwrap();
        std::fs::write(root.join("notes.md"), "alpha\nbeta\ngamma\n").unwrap();
        std::fs::write(root.join("blob.bin"), [1u8, 0, 2, 3]).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link")).unwrap();
        let ws = Arc::new(Workspace::new(&root, &[]).unwrap());
        (dir, ws)
    }

    async fn run(tool: &dyn Tool, args: serde_json::Value) -> Result<String, AgentError> {
        tool.call(&ToolContext::default(), args).await
    }

    fn code(result: Result<String, AgentError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[tokio::test]
    async fn read_pages_by_lines_and_refuses_binary_and_escapes() {
        let (_dir, ws) = workspace();
        let read = ReadTool(ws);
        assert_eq!(
            run(&read, json!({"path": "notes.md"})).await.unwrap(),
            "alpha\nbeta\ngamma"
        );
        assert_eq!(
            run(&read, json!({"path": "notes.md", "offset": 2, "limit": 1}))
                .await
                .unwrap(),
            "beta\n[lines 2-2 of 3; continue with offset 3]"
        );
        assert_eq!(
            code(run(&read, json!({"path": "blob.bin"})).await),
            "binary_file"
        );
        assert_eq!(
            code(run(&read, json!({"path": "link"})).await),
            "path_outside_workspace"
        );
        assert_eq!(
            code(run(&read, json!({"path": "../secret.txt"})).await),
            "path_outside_workspace"
        );
        assert_eq!(code(run(&read, json!({"path": "src"})).await), "not_a_file");
        assert_eq!(
            code(run(&read, json!({"file": "x"})).await),
            "invalid_arguments"
        );
    }

    #[tokio::test]
    async fn write_creates_replaces_and_appends_atomically() {
        let (dir, ws) = workspace();
        let write = WriteTool(ws.clone());
        run(&write, json!({"path": "a/b/new.txt", "content": "one\n"}))
            .await
            .unwrap();
        run(
            &write,
            json!({"path": "a/b/new.txt", "content": "two\n", "append": true}),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.root().join("a/b/new.txt")).unwrap(),
            "one\ntwo\n"
        );
        run(&write, json!({"path": "a/b/new.txt", "content": "three"}))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.root().join("a/b/new.txt")).unwrap(),
            "three"
        );
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(ws.root().join("a/b")).unwrap().count(), 1);
        // The symlink leads out: neither replaced nor followed.
        assert_eq!(
            code(run(&write, json!({"path": "link", "content": "x"})).await),
            "path_outside_workspace"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
            "s3cret"
        );
        assert_eq!(
            code(run(&write, json!({"path": "src", "content": "x"})).await),
            "is_a_directory"
        );
    }

    #[tokio::test]
    async fn edit_needs_exactly_one_match() {
        let (_dir, ws) = workspace();
        let edit = EditTool(ws.clone());
        run(
            &edit,
            json!({"path": "notes.md", "old_text": "beta", "new_text": "BETA"}),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.root().join("notes.md")).unwrap(),
            "alpha\nBETA\ngamma\n"
        );
        assert_eq!(
            code(
                run(
                    &edit,
                    json!({"path": "notes.md", "old_text": "delta", "new_text": "x"})
                )
                .await
            ),
            "no_match"
        );
        assert_eq!(
            code(
                run(
                    &edit,
                    json!({"path": "notes.md", "old_text": "a\n", "new_text": "x"})
                )
                .await
            ),
            "ambiguous_match"
        );
        let all = run(
            &edit,
            json!({"path": "notes.md", "old_text": "a\n", "new_text": "A\n", "replace_all": true}),
        )
        .await
        .unwrap();
        assert_eq!(all, "replaced 2 occurrences in notes.md");
    }

    #[tokio::test]
    async fn list_glob_and_grep_find_files_and_lines() {
        let (_dir, ws) = workspace();
        let listed = run(&ListTool(ws.clone()), json!({})).await.unwrap();
        assert!(listed.contains("src/"), "{listed}");
        assert!(listed.contains("notes.md (17 bytes)"), "{listed}");
        assert!(listed.contains("link -> "), "{listed}");

        let globbed = run(&GlobTool(ws.clone()), json!({"pattern": "**/*.rs"}))
            .await
            .unwrap();
        assert_eq!(globbed, "src/main.rs");
        assert_eq!(
            code(run(&GlobTool(ws.clone()), json!({"pattern": "a{"})).await),
            "invalid_pattern"
        );

        let grep = GrepTool(ws.clone());
        assert_eq!(
            run(&grep, json!({"pattern": "PRINT", "ignore_case": true}))
                .await
                .unwrap(),
            "src/main.rs:2:     println!(\"hi\");"
        );
        assert_eq!(
            run(
                &grep,
                json!({"pattern": "a$", "glob": "*.md", "max_results": 1})
            )
            .await
            .unwrap(),
            "notes.md:1: alpha\n[2 more matches not shown]"
        );
        // The symlinked secret is not searched.
        assert!(
            run(&grep, json!({"pattern": "s3cret"}))
                .await
                .unwrap()
                .starts_with("no matches")
        );
        assert_eq!(
            code(run(&grep, json!({"pattern": "("})).await),
            "invalid_pattern"
        );
    }
}
