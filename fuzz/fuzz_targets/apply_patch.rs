//! apply_patch: any patch applies or is refused; a refused patch changes no
//! file, and nothing is ever written outside the workspace.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ocg_agent_lib::tools::{Tool, ToolContext, Workspace, patch::ApplyPatchTool};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Before the first NUL: the content of `a.txt`; after it: the patch.
    let (original, patch) = text.split_once('\0').unwrap_or(("one\ntwo\nthree\n", text));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("ws");
    std::fs::create_dir(&root).expect("the workspace");
    std::fs::write(root.join("a.txt"), original).expect("a.txt");
    let workspace = Arc::new(Workspace::new(&root, &[]).expect("a workspace"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(ApplyPatchTool(workspace).call(
        &ToolContext::default(),
        serde_json::json!({ "patch": patch }),
    ));
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the temporary directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(outside, ["ws"], "written outside the workspace");
    if result.is_err() {
        let now = std::fs::read_to_string(root.join("a.txt")).expect("a.txt stays");
        assert_eq!(now, original, "a refused patch changed a.txt");
        let inside: Vec<_> = std::fs::read_dir(&root)
            .expect("the workspace")
            .map(|e| e.expect("an entry").file_name())
            .collect();
        assert_eq!(inside, ["a.txt"], "a refused patch left files behind");
    }
});
