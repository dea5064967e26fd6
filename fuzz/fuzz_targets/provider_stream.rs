//! A vendor's streamed answer (OpenAI-compatible or Anthropic), tool-call
//! argument fragments included: the stream always ends, with exactly one
//! terminal item (`Done` or an error) and nothing after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocg_agent_lib::fuzzing::{Dialect, provider_stream};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let dialect = if seed & 1 == 0 {
        Dialect::OpenAi
    } else {
        Dialect::Anthropic
    };
    let step = usize::from(seed >> 1) % 32 + 1;
    let chunks = body.chunks(step).map(<[u8]>::to_vec).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let items = runtime.block_on(provider_stream(dialect, chunks));
    let terminal = |item: &String| item.starts_with("Err(") || item.starts_with("Ok(Done");
    let last = items.last().expect("a stream ends with an item");
    assert!(terminal(last), "{items:?}");
    assert_eq!(items.iter().filter(|i| terminal(i)).count(), 1, "{items:?}");
});
