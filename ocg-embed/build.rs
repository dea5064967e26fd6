//! With the `server` feature, ocg-embed links FAISS's C API as a shared
//! library (`libfaiss_c.so`, through the faiss crate) from the directory
//! `scripts/setup-faiss.sh` builds: `$FAISS_LIB_DIR`, else
//! `${OCG_CACHE_DIR:-~/.cache/ocg}/faiss-1.12.0/lib`. That directory holds
//! one `libfaiss.so` per SIMD level, and the dynamic loader picks the best
//! one the CPU runs (see docs/embedding.md). This script tells the linker
//! where it is, records it as the run path of this crate's own test and
//! example binaries, and hands it to the crates that build programs on
//! ocg-embed as `DEP_OCG_FAISS_LIB_DIR` (they add the same run path).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=FAISS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=OCG_CACHE_DIR");
    if env::var_os("CARGO_FEATURE_SERVER").is_none() {
        return;
    }
    let dir = match env::var_os("FAISS_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir().join("faiss-1.12.0/lib"),
    };
    if !dir.join("libfaiss_c.so").is_file() {
        // A warning, not an error: `cargo check` and clippy need no library.
        println!(
            "cargo:warning=FAISS is not built at {} (run scripts/setup.sh, or set FAISS_LIB_DIR): linking ocg-embed's server will fail",
            dir.display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("libfaiss_c.so").display()
    );
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("OCG_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/ocg")
}
