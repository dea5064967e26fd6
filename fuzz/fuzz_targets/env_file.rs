//! env.config: any text parses or is a clear error; what parses renders
//! back to the same settings; any value set is read back unchanged.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocg_core::config::env_file::EnvFile;

fn settings(file: &EnvFile) -> Vec<(String, String)> {
    file.assignments()
        .into_iter()
        .map(|a| (a.key, a.value))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The text before the first NUL is the file, the rest a value to set.
    let (text, value) = text.split_once('\0').unwrap_or((text, "x"));
    let path = Path::new("env.config");
    let Ok(mut file) = EnvFile::parse(text, path) else {
        return;
    };
    let again = EnvFile::parse(&file.render(), path).expect("a rendered file parses");
    assert_eq!(settings(&again), settings(&file));
    if file.set("OCG_FUZZ_VALUE", value).is_ok() {
        let again = EnvFile::parse(&file.render(), path).expect("a file with a set value parses");
        assert_eq!(again.get("OCG_FUZZ_VALUE"), Some(value));
    }
});
