//! Announcing and finding the embedding service's address.
//!
//! The service chooses its port at start (the first free one from 50000), so
//! it writes its base URL, one line such as `http://127.0.0.1:50000`, to
//! `<OCG_PID_DIR>/ocg-embedding.addr`. `ocg` waits for that file before
//! probing `/health`; the agent reads it whenever it connects, so a restart
//! on another port is followed. `OCG_EMBEDDING_URL` overrides the file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::EmbedError;

/// The file a service announces its base URL in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFile {
    path: PathBuf,
}

impl AddressFile {
    /// The address file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AddressFile { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The announced URL, if any.
    pub fn read(&self) -> Option<String> {
        let text = fs::read_to_string(&self.path).ok()?;
        let url = text.trim();
        url.starts_with("http").then(|| url.to_owned())
    }

    /// Announce `url`, atomically (temporary file + rename).
    pub fn write(&self, url: &str) -> Result<(), EmbedError> {
        let error = |source| EmbedError::AddressFile {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(error)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(error)?;
        writeln!(file, "{url}").map_err(error)?;
        file.sync_all().map_err(error)?;
        fs::rename(&tmp, &self.path).map_err(error)
    }

    /// Remove the file if it still announces `url` (a newer instance may
    /// have replaced it).
    pub fn withdraw(&self, url: &str) {
        if self.read().as_deref() == Some(url) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where clients reach the embedding service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbeddingEndpoint {
    /// A configured URL (`OCG_EMBEDDING_URL`).
    Fixed(String),
    /// Whatever the service announced.
    Announced(AddressFile),
}

impl EmbeddingEndpoint {
    /// The base URL now, or why there is none.
    pub fn base_url(&self) -> Result<String, String> {
        match self {
            EmbeddingEndpoint::Fixed(url) => Ok(url.clone()),
            EmbeddingEndpoint::Announced(file) => file.read().ok_or_else(|| {
                format!(
                    "no embedding service announced in {}",
                    file.path().display()
                )
            }),
        }
    }
}
