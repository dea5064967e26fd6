//! The file tools with whatever arguments a model sends: each answers or
//! refuses, and nothing outside the workspace is read into an answer,
//! written, or created, through a symlink or otherwise.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ocg_agent_lib::tools::fs::{EditTool, GlobTool, GrepTool, ListTool, ReadTool, WriteTool};
use ocg_agent_lib::tools::patch::ApplyPatchTool;
use ocg_agent_lib::tools::{Tool, ToolContext, Workspace};

const SECRET: &str = "the-secret-outside-the-workspace";

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let Ok(arguments) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("ws");
    std::fs::create_dir(&root).expect("the workspace");
    std::fs::write(dir.path().join("secret.txt"), SECRET).expect("the secret");
    std::fs::write(root.join("a.txt"), "alpha\nbeta\n").expect("a.txt");
    std::fs::create_dir(root.join("sub")).expect("sub");
    std::fs::write(root.join("sub/b.md"), "# beta\n").expect("b.md");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link")).expect("link");
    std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("up");
    let workspace = Arc::new(Workspace::new(&root, &[]).expect("a workspace"));
    let tools: [Box<dyn Tool>; 7] = [
        Box::new(ReadTool(workspace.clone())),
        Box::new(WriteTool(workspace.clone())),
        Box::new(EditTool(workspace.clone())),
        Box::new(ListTool(workspace.clone())),
        Box::new(GlobTool(workspace.clone())),
        Box::new(GrepTool(workspace.clone())),
        Box::new(ApplyPatchTool(workspace)),
    ];
    let tool = &tools[usize::from(which) % tools.len()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(tool.call(&ToolContext::default(), arguments));
    // An answer may echo the arguments (a pattern, a path); it must not
    // bring the secret in any other way.
    let asked = String::from_utf8_lossy(json).contains(SECRET);
    if let Ok(answer) = &result {
        assert!(asked || !answer.contains(SECRET), "{} read outside: {answer}", tool.name());
    }
    let mut outside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the temporary directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    outside.sort();
    assert_eq!(outside, ["secret.txt", "ws"], "{} created a file outside", tool.name());
    let secret = std::fs::read_to_string(dir.path().join("secret.txt")).expect("the secret");
    assert_eq!(secret, SECRET, "{} wrote outside", tool.name());
});
