//! The items of a collection, read straight from the embedding store's
//! database (`embeddings.db`): what `ocg migrate` copies into another
//! store. SQLite only; the FAISS indexes are not needed, since the
//! database holds every vector.

use std::path::Path;

use ocg_core::VectorItem;
use rusqlite::{Connection, OpenFlags};

use crate::EmbedError;

/// A vector as the store keeps it: little-endian `f32`s.
pub(crate) fn from_blob(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Every item of `collection` in the store database at `database`, oldest
/// first, with its vector, text and metadata; none when the collection
/// does not exist. The database is opened read-only.
pub fn collection_items(database: &Path, collection: &str) -> Result<Vec<VectorItem>, EmbedError> {
    let db = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut select = db.prepare(
        "SELECT id, text, metadata, vector FROM items WHERE collection = ?1 ORDER BY label",
    )?;
    let items = select
        .query_map([collection], |row| {
            let metadata: String = row.get(2)?;
            let vector: Vec<u8> = row.get(3)?;
            Ok(VectorItem {
                id: row.get(0)?,
                text: row.get(1)?,
                vector: Some(from_blob(&vector)),
                metadata: serde_json::from_str(&metadata).unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(items)
}
