//! Run with: bench/tools.sh   (builds in release, then runs this)
//!
//! `exec` start latency: a call of `exec` running `/usr/bin/true`, from the
//! call to the result, through the tool and through the registry the
//! runtime uses. Baseline: `tokio::process::Command` spawning the same
//! program with piped output and waiting for it, in the same run. The
//! measurements are interleaved in rounds so drift hits all of them alike.
//! Prints one table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use ocg_agent_lib::ToolExecutor;
use ocg_agent_lib::tools::{
    ExecSandbox, ExecTool, Tool, ToolContext, ToolPolicy, ToolRegistry, Workspace,
};
use ocg_core::ToolCall;
use ocg_tests::bench::percentile;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 100;
const WARMUP: usize = 50;

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

async fn direct() -> f64 {
    let start = Instant::now();
    let output = tokio::process::Command::new("/usr/bin/true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    ms(start)
}

async fn tool(exec: &ExecTool) -> f64 {
    let start = Instant::now();
    let out = exec
        .call(
            &ToolContext::default(),
            serde_json::json!({"argv": ["/usr/bin/true"]}),
        )
        .await
        .unwrap();
    assert!(out.starts_with("exit code 0"), "{out}");
    ms(start)
}

async fn registry(tools: &ToolRegistry, call: &ToolCall) -> f64 {
    let start = Instant::now();
    let out = tools.call(Some("bench"), call).await;
    assert!(out.ok, "{}", out.content);
    ms(start)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let workspace = Workspace::new(&dir.path().join("ws"), &[])?;
    // The sandbox helper is the agent binary (bench/tools.sh builds it).
    let helper = std::env::var_os("OCG_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("set OCG_AGENT_BIN to the ocg-agent binary"))?;
    let policy = ToolPolicy {
        sandbox: ExecSandbox::Kernel {
            helper,
            network: false,
        },
        ..ToolPolicy::default()
    };
    let unconfined = ExecTool::new(
        workspace.clone(),
        ToolPolicy {
            sandbox: ExecSandbox::Off,
            ..policy.clone()
        },
    );
    let exec = ExecTool::new(workspace.clone(), policy.clone());
    let tools = ToolRegistry::new(
        vec![Arc::new(ExecTool::new(workspace, policy.clone())) as Arc<dyn Tool>],
        policy,
    )?;
    let call = ToolCall {
        id: "1".into(),
        name: "exec".into(),
        arguments: serde_json::json!({"argv": ["true"]}),
    };

    for _ in 0..WARMUP {
        direct().await;
        tool(&unconfined).await;
        tool(&exec).await;
        registry(&tools, &call).await;
    }
    let (mut base, mut through_tool, mut through_registry) = (Vec::new(), Vec::new(), Vec::new());
    let mut unconfined_tool = Vec::new();
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            base.push(direct().await);
        }
        for _ in 0..PER_ROUND {
            unconfined_tool.push(tool(&unconfined).await);
        }
        for _ in 0..PER_ROUND {
            through_tool.push(tool(&exec).await);
        }
        for _ in 0..PER_ROUND {
            through_registry.push(registry(&tools, &call).await);
        }
    }
    let base50 = percentile(&mut base, 0.5);
    let base99 = percentile(&mut base, 0.99);
    println!();
    println!(
        "exec start latency: /usr/bin/true, {} runs each, interleaved ({} cores)",
        ROUNDS * PER_ROUND,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| | p50 ms | p99 ms | p50 vs baseline | p99 vs baseline |");
    println!("|---|---|---|---|---|");
    println!("| baseline: tokio::process::Command | {base50:.3} | {base99:.3} | 1.00× | 1.00× |");
    for (name, samples) in [
        (
            "`exec` tool, sandbox off (`argv: [\"/usr/bin/true\"]`)",
            &mut unconfined_tool,
        ),
        (
            "`exec` tool, sandboxed: helper + landlock + seccomp",
            &mut through_tool,
        ),
        (
            "`exec` through ToolRegistry, sandboxed (`argv: [\"true\"]`)",
            &mut through_registry,
        ),
    ] {
        let p50 = percentile(samples, 0.5);
        let p99 = percentile(samples, 0.99);
        println!(
            "| {name} | {p50:.3} | {p99:.3} | {:.2}× | {:.2}× |",
            p50 / base50,
            p99 / base99
        );
    }
    Ok(())
}
