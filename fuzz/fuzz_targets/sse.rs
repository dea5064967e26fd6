//! The SSE decoder: however a body is split into network reads, the events
//! are the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocg_agent_lib::fuzzing::sse_events;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = sse_events(&[body]);
    let step = usize::from(seed % 7) + 1;
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    assert_eq!(sse_events(&chunks), whole, "split every {step} bytes");
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(sse_events(&bytes), whole, "split every byte");
});
