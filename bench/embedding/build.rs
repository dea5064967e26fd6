//! Run path of the shared FAISS libraries that ocg-embed links (its build.rs
//! says where they are), so this program finds them wherever it is started.
fn main() {
    if let Ok(dir) = std::env::var("DEP_OCG_FAISS_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
