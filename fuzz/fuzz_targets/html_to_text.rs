//! web_fetch's HTML to text: any page (fetched from anywhere) converts,
//! and the text never holds a NUL (`&#0;` included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocg_agent_lib::tools::html_to_text;

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let text = html_to_text(&html, None);
    assert!(!text.contains('\0'), "a NUL in the text: {text:?}");
});
