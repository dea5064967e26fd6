//! `apply_patch`: several file changes applied all together or not at all.
//!
//! The patch format is the one coding models are trained to write:
//!
//! ```text
//! *** Begin Patch
//! *** Add File: docs/new.md
//! +first line
//! *** Update File: src/app.py
//! *** Move to: src/main.py
//! @@ def greet():
//! -    print("Hi")
//! +    print("Hello")
//! *** Delete File: old.txt
//! *** End Patch
//! ```
//!
//! In an update, each `@@` starts a hunk (the text after `@@` optionally
//! names a line to find first); lines start with ` ` (context), `-`
//! (removed) or `+` (added). A hunk's context and removed lines are found at
//! or after the previous hunk, exactly, then ignoring trailing whitespace,
//! then ignoring surrounding whitespace.
//!
//! Application is in two phases. First every change is computed in memory
//! and every path checked; any problem fails the whole patch before a byte
//! is written. Then new contents are staged as temporary files beside their
//! targets and renamed into place; should a rename or delete still fail, the
//! changes already made are undone from the originals kept in memory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::{Tool, ToolContext, ToolGroup, Workspace, arguments};
use crate::AgentError;

/// The largest patch accepted.
pub const MAX_PATCH_BYTES: usize = 4 * 1024 * 1024;

fn bad_patch(message: impl Into<String>) -> AgentError {
    AgentError::tool("invalid_patch", message)
}

/// One file change, as parsed.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Add {
        path: String,
        content: String,
    },
    Delete {
        path: String,
    },
    Update {
        path: String,
        move_to: Option<String>,
        hunks: Vec<Hunk>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Hunk {
    /// A line to find before the hunk's old lines (`@@ header`).
    anchor: Option<String>,
    old: Vec<String>,
    new: Vec<String>,
    /// `*** End of File`: the old lines end the file.
    at_end: bool,
}

fn parse(patch: &str) -> Result<Vec<Change>, AgentError> {
    let lines: Vec<&str> = patch.lines().collect();
    let start = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .ok_or_else(|| bad_patch("the patch is empty"))?;
    if lines[start].trim() != "*** Begin Patch" {
        return Err(bad_patch("the patch must start with `*** Begin Patch`"));
    }
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .filter(|&i| i > start && lines[i].trim() == "*** End Patch")
        .ok_or_else(|| bad_patch("the patch must end with `*** End Patch`"))?;
    let body = &lines[start + 1..end];
    let mut changes = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let line = body[i];
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        if let Some(path) = line.strip_prefix("*** Add File: ") {
            i += 1;
            let mut content = String::new();
            while i < body.len() && !body[i].starts_with("*** ") {
                let Some(text) = body[i].strip_prefix('+') else {
                    return Err(bad_patch(format!(
                        "line {}: every line of an added file starts with `+`",
                        start + i + 2
                    )));
                };
                content.push_str(text);
                content.push('\n');
                i += 1;
            }
            changes.push(Change::Add {
                path: path.trim().to_owned(),
                content,
            });
        } else if let Some(path) = line.strip_prefix("*** Delete File: ") {
            changes.push(Change::Delete {
                path: path.trim().to_owned(),
            });
            i += 1;
        } else if let Some(path) = line.strip_prefix("*** Update File: ") {
            i += 1;
            let mut move_to = None;
            if let Some(target) = body.get(i).and_then(|l| l.strip_prefix("*** Move to: ")) {
                move_to = Some(target.trim().to_owned());
                i += 1;
            }
            let mut hunks: Vec<Hunk> = Vec::new();
            let mut current: Option<Hunk> = None;
            while i < body.len() {
                let line = body[i];
                if line.trim_end() == "*** End of File" {
                    current.get_or_insert_with(Hunk::default).at_end = true;
                    i += 1;
                    continue;
                }
                if line.starts_with("*** ") {
                    break;
                }
                if let Some(header) = line.strip_prefix("@@") {
                    hunks.extend(current.take());
                    let header = header.trim();
                    current = Some(Hunk {
                        anchor: (!header.is_empty()).then(|| header.to_owned()),
                        ..Hunk::default()
                    });
                    i += 1;
                    continue;
                }
                let hunk = current.get_or_insert_with(Hunk::default);
                match line.chars().next() {
                    Some('+') => hunk.new.push(line[1..].to_owned()),
                    Some('-') => hunk.old.push(line[1..].to_owned()),
                    Some(' ') => {
                        hunk.old.push(line[1..].to_owned());
                        hunk.new.push(line[1..].to_owned());
                    }
                    // Models often drop the space of an empty context line.
                    None => {
                        hunk.old.push(String::new());
                        hunk.new.push(String::new());
                    }
                    Some(_) => {
                        return Err(bad_patch(format!(
                            "line {}: a hunk line starts with ` `, `-` or `+`, got {line:?}",
                            start + i + 2
                        )));
                    }
                }
                i += 1;
            }
            hunks.extend(current.take());
            if hunks.is_empty() && move_to.is_none() {
                return Err(bad_patch(format!("`*** Update File: {path}` has no hunks")));
            }
            changes.push(Change::Update {
                path: path.trim().to_owned(),
                move_to,
                hunks,
            });
        } else {
            return Err(bad_patch(format!(
                "line {}: expected `*** Add File:`, `*** Update File:` or `*** Delete File:`, got {line:?}",
                start + i + 2
            )));
        }
    }
    if changes.is_empty() {
        return Err(bad_patch("the patch changes nothing"));
    }
    Ok(changes)
}

/// Where `needle` occurs in `lines` at or after `from`, trying exact,
/// trailing-whitespace-insensitive, then whitespace-insensitive matching.
fn find(lines: &[String], needle: &[String], from: usize, at_end: bool) -> Option<usize> {
    type Eq = fn(&str, &str) -> bool;
    let comparisons: [Eq; 3] = [
        |a, b| a == b,
        |a, b| a.trim_end() == b.trim_end(),
        |a, b| a.trim() == b.trim(),
    ];
    if needle.len() > lines.len() {
        return None;
    }
    let last = lines.len() - needle.len();
    for equal in comparisons {
        let matches = |at: usize| {
            needle
                .iter()
                .zip(&lines[at..])
                .all(|(n, l)| equal(n.as_str(), l.as_str()))
        };
        if at_end {
            if last >= from && matches(last) {
                return Some(last);
            }
            continue;
        }
        if let Some(at) = (from..=last).find(|&at| matches(at)) {
            return Some(at);
        }
    }
    None
}

/// Apply `hunks` to `text`.
fn apply_hunks(text: &str, hunks: &[Hunk], shown: &str) -> Result<String, AgentError> {
    let trailing_newline = text.ends_with('\n') || text.is_empty();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut cursor = 0;
    for (number, hunk) in hunks.iter().enumerate() {
        if let Some(anchor) = &hunk.anchor {
            let at = find(&lines, std::slice::from_ref(anchor), cursor, false)
                .or_else(|| {
                    // The header may be a fragment of the line.
                    (cursor..lines.len()).find(|&i| lines[i].contains(anchor.as_str()))
                })
                .ok_or_else(|| {
                    AgentError::tool(
                        "patch_mismatch",
                        format!(
                            "{shown}: hunk {}: the line {anchor:?} was not found",
                            number + 1
                        ),
                    )
                })?;
            // The anchor is usually the hunk's first context line; search
            // from it so it can also be part of the old lines.
            cursor = at;
        }
        let at = if hunk.old.is_empty() {
            if hunk.at_end { lines.len() } else { cursor }
        } else {
            find(&lines, &hunk.old, cursor, hunk.at_end).ok_or_else(|| {
                AgentError::tool(
                    "patch_mismatch",
                    format!(
                        "{shown}: hunk {}: these lines were not found:\n{}",
                        number + 1,
                        hunk.old.join("\n")
                    ),
                )
            })?
        };
        lines.splice(at..at + hunk.old.len(), hunk.new.iter().cloned());
        cursor = at + hunk.new.len();
    }
    let mut out = lines.join("\n");
    if trailing_newline && !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// A resolved, computed change, ready to commit.
#[derive(Debug)]
enum Step {
    /// Write `content` to `path`; `original` is what was there (None: new).
    Write {
        path: PathBuf,
        content: String,
        original: Option<Vec<u8>>,
    },
    /// Remove `path`, which held `original`.
    Remove { path: PathBuf, original: Vec<u8> },
}

fn read_original(workspace: &Workspace, path: &Path) -> Result<Vec<u8>, AgentError> {
    let shown = workspace.display(path);
    if !path.is_file() {
        return Err(AgentError::tool(
            "not_a_file",
            format!("{shown} is not a regular file"),
        ));
    }
    std::fs::read(path).map_err(|e| AgentError::tool("io_error", format!("{shown}: {e}")))
}

fn plan(workspace: &Workspace, changes: Vec<Change>) -> Result<Vec<Step>, AgentError> {
    let mut steps = Vec::new();
    let mut touched: HashSet<PathBuf> = HashSet::new();
    let mut claim = |path: &Path| -> Result<(), AgentError> {
        if touched.insert(path.to_owned()) {
            Ok(())
        } else {
            Err(bad_patch(format!(
                "{} is changed twice in one patch",
                workspace.display(path)
            )))
        }
    };
    let must_be_new = |path: &Path| {
        if path.symlink_metadata().is_ok() {
            Err(AgentError::tool(
                "already_exists",
                format!(
                    "{} already exists; update it instead",
                    workspace.display(path)
                ),
            ))
        } else {
            Ok(())
        }
    };
    for change in changes {
        match change {
            Change::Add { path, content } => {
                let path = workspace.writable(&path)?;
                must_be_new(&path)?;
                claim(&path)?;
                steps.push(Step::Write {
                    path,
                    content,
                    original: None,
                });
            }
            Change::Delete { path } => {
                let path = workspace.existing(&path)?;
                let original = read_original(workspace, &path)?;
                claim(&path)?;
                steps.push(Step::Remove { path, original });
            }
            Change::Update {
                path,
                move_to,
                hunks,
            } => {
                let source = workspace.existing(&path)?;
                let original = read_original(workspace, &source)?;
                let shown = workspace.display(&source);
                let text = String::from_utf8(original.clone()).map_err(|_| {
                    AgentError::tool("binary_file", format!("{shown} is not UTF-8 text"))
                })?;
                let content = apply_hunks(&text, &hunks, &shown)?;
                claim(&source)?;
                match move_to {
                    Some(target) => {
                        let target = workspace.writable(&target)?;
                        if target != source {
                            must_be_new(&target)?;
                            claim(&target)?;
                            steps.push(Step::Write {
                                path: target,
                                content,
                                original: None,
                            });
                            steps.push(Step::Remove {
                                path: source,
                                original,
                            });
                        } else {
                            steps.push(Step::Write {
                                path: source,
                                content,
                                original: Some(original),
                            });
                        }
                    }
                    None => steps.push(Step::Write {
                        path: source,
                        content,
                        original: Some(original),
                    }),
                }
            }
        }
    }
    Ok(steps)
}

/// Undo the first `done` steps, newest first.
fn roll_back(steps: &[Step], done: usize) {
    for step in steps[..done].iter().rev() {
        let result = match step {
            Step::Write {
                path,
                original: Some(original),
                ..
            }
            | Step::Remove { path, original } => super::fs::write_atomically(path, original),
            Step::Write {
                path,
                original: None,
                ..
            } => std::fs::remove_file(path),
        };
        if let Err(error) = result {
            tracing::error!(path = %step_path(step).display(), %error, "apply_patch could not roll back a change");
        }
    }
}

fn step_path(step: &Step) -> &Path {
    match step {
        Step::Write { path, .. } | Step::Remove { path, .. } => path,
    }
}

fn commit(workspace: &Workspace, steps: &[Step]) -> Result<(), AgentError> {
    let failed = |path: &Path, error: std::io::Error| {
        AgentError::tool(
            "io_error",
            format!(
                "{}: {error}; every change of the patch was undone",
                workspace.display(path)
            ),
        )
    };
    // Stage every new content beside its target first: most failures (no
    // space, no permission) show up here, before anything is replaced.
    let mut staged = Vec::new();
    for step in steps {
        if let Step::Write { path, content, .. } = step {
            let parent = path.parent().unwrap_or(Path::new("."));
            let file = std::fs::create_dir_all(parent)
                .and_then(|()| super::fs::stage(path, content.as_bytes()))
                .map_err(|e| failed(path, e))?;
            staged.push(Some(file));
        } else {
            staged.push(None);
        }
    }
    for (done, (step, file)) in steps.iter().zip(staged).enumerate() {
        let result = match (step, file) {
            (Step::Write { path, .. }, Some(file)) => {
                file.persist(path).map(|_| ()).map_err(|e| e.error)
            }
            (Step::Remove { path, .. }, _) => std::fs::remove_file(path),
            (Step::Write { path, .. }, None) => Err(std::io::Error::other(format!(
                "{} was not staged",
                path.display()
            ))),
        };
        if let Err(error) = result {
            roll_back(steps, done);
            return Err(failed(step_path(step), error));
        }
    }
    Ok(())
}

/// `apply_patch`: add, update, move and delete files in one atomic step.
#[derive(Debug, Clone)]
pub struct ApplyPatchTool(pub Arc<Workspace>);

#[derive(Deserialize)]
struct PatchArgs {
    patch: String,
}

#[async_trait]
impl Tool for ApplyPatchTool {
    fn name(&self) -> &'static str {
        "apply_patch"
    }
    fn group(&self) -> ToolGroup {
        ToolGroup::Fs
    }
    fn description(&self) -> &'static str {
        "Apply a multi-file patch atomically: either every change is made or none. Format:\n\
         *** Begin Patch\n\
         *** Add File: path\n+line of the new file\n\
         *** Update File: path\n*** Move to: new/path   (optional)\n@@ optional line to find first\n \
         context line\n-removed line\n+added line\n\
         *** Delete File: path\n\
         *** End Patch\n\
         Give about three context lines around each change."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {"patch": {"type": "string", "description": "The whole patch, from *** Begin Patch to *** End Patch"}},
            "required": ["patch"]
        })
    }
    async fn call(&self, _: &ToolContext, args: serde_json::Value) -> Result<String, AgentError> {
        let args: PatchArgs = arguments(self.name(), args)?;
        if args.patch.len() > MAX_PATCH_BYTES {
            return Err(bad_patch(format!(
                "the patch has {} bytes; the limit is {MAX_PATCH_BYTES}",
                args.patch.len()
            )));
        }
        let workspace = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let steps = plan(&workspace, parse(&args.patch)?)?;
            commit(&workspace, &steps)?;
            let summary: Vec<String> = steps
                .iter()
                .map(|step| match step {
                    Step::Write {
                        path,
                        original: None,
                        ..
                    } => {
                        format!("A {}", workspace.display(path))
                    }
                    Step::Write { path, .. } => format!("M {}", workspace.display(path)),
                    Step::Remove { path, .. } => format!("D {}", workspace.display(path)),
                })
                .collect();
            Ok(format!("patch applied:\n{}", summary.join("\n")))
        })
        .await
        .map_err(|error| AgentError::Internal(format!("patch task failed: {error}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Arc<Workspace>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(
            root.join("src/app.py"),
            "def greet():\n    print(\"Hi\")\n\ndef bye():\n    print(\"Bye\")\n",
        )
        .unwrap();
        std::fs::write(root.join("old.txt"), "old\n").unwrap();
        let ws = Arc::new(Workspace::new(&root, &[]).unwrap());
        (dir, ws)
    }

    async fn apply(ws: &Arc<Workspace>, patch: &str) -> Result<String, AgentError> {
        ApplyPatchTool(ws.clone())
            .call(&ToolContext::default(), json!({ "patch": patch }))
            .await
    }

    fn read(ws: &Workspace, path: &str) -> String {
        std::fs::read_to_string(ws.root().join(path)).unwrap()
    }

    #[tokio::test]
    async fn adds_updates_moves_and_deletes() {
        let (_dir, ws) = setup();
        let patch = r#"*** Begin Patch
*** Add File: docs/new.md
+# New
+text
*** Update File: src/app.py
*** Move to: src/main.py
@@ def greet():
-    print("Hi")
+    print("Hello")
@@
 def bye():
-    print("Bye")
+    print("Goodbye")
*** Delete File: old.txt
*** End Patch
"#;
        let summary = apply(&ws, patch).await.unwrap();
        assert_eq!(
            summary,
            "patch applied:\nA docs/new.md\nA src/main.py\nD src/app.py\nD old.txt"
        );
        assert_eq!(read(&ws, "docs/new.md"), "# New\ntext\n");
        assert_eq!(
            read(&ws, "src/main.py"),
            "def greet():\n    print(\"Hello\")\n\ndef bye():\n    print(\"Goodbye\")\n"
        );
        assert!(!ws.root().join("src/app.py").exists());
        assert!(!ws.root().join("old.txt").exists());
    }

    #[tokio::test]
    async fn a_patch_failing_halfway_changes_nothing() {
        let (_dir, ws) = setup();
        let patch = "*** Begin Patch\n\
*** Add File: added.txt\n\
+x\n\
*** Update File: src/app.py\n\
-    print(\"Hi\")\n\
+    print(\"Hello\")\n\
*** Update File: old.txt\n\
-this line is not there\n\
+new\n\
*** End Patch";
        let error = apply(&ws, patch).await.unwrap_err();
        assert_eq!(error.code(), "patch_mismatch");
        assert!(error.to_string().contains("old.txt"), "{error}");
        assert!(!ws.root().join("added.txt").exists());
        assert!(read(&ws, "src/app.py").contains("\"Hi\""));
        assert_eq!(read(&ws, "old.txt"), "old\n");
        let leftovers: Vec<_> = std::fs::read_dir(ws.root())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".ocg-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn refusals_are_clear() {
        let (_dir, ws) = setup();
        let cases = [
            ("no header", "invalid_patch"),
            ("*** Begin Patch\n*** Add File: x\n+y\n", "invalid_patch"),
            (
                "*** Begin Patch\n*** Add File: ../escape.txt\n+y\n*** End Patch",
                "path_outside_workspace",
            ),
            (
                "*** Begin Patch\n*** Add File: old.txt\n+y\n*** End Patch",
                "already_exists",
            ),
            (
                "*** Begin Patch\n*** Delete File: missing.txt\n*** End Patch",
                "not_found",
            ),
            (
                "*** Begin Patch\n*** Delete File: old.txt\n*** Delete File: old.txt\n*** End Patch",
                "invalid_patch",
            ),
            (
                "*** Begin Patch\n*** Update File: old.txt\n?what\n*** End Patch",
                "invalid_patch",
            ),
        ];
        for (patch, code) in cases {
            let error = apply(&ws, patch).await.unwrap_err();
            assert_eq!(error.code(), code, "{patch}: {error}");
        }
        assert_eq!(read(&ws, "old.txt"), "old\n");
    }

    #[test]
    fn hunks_tolerate_whitespace_drift_and_anchor_at_the_end() {
        let text = "a\n  b  \nc\nb\n";
        let hunks = vec![Hunk {
            old: vec!["b".into()],
            new: vec!["B".into()],
            at_end: true,
            ..Hunk::default()
        }];
        assert_eq!(apply_hunks(text, &hunks, "t").unwrap(), "a\n  b  \nc\nB\n");
        let hunks = vec![Hunk {
            old: vec!["b".into()],
            new: vec!["B".into()],
            ..Hunk::default()
        }];
        assert_eq!(
            apply_hunks("a\n  b  \nc\n", &hunks, "t").unwrap(),
            "a\nB\nc\n",
            "whitespace-insensitive when nothing matches exactly"
        );
        let append = vec![Hunk {
            new: vec!["d".into()],
            at_end: true,
            ..Hunk::default()
        }];
        assert_eq!(
            apply_hunks("a\n", &append, "t").unwrap(),
            "a\nd\n",
            "pure additions at the end"
        );
    }
}
