//! The SQLite schema of the store and its migrations.

use super::*;

/// Schema version 1: the FTS5 index of item texts (hybrid search) and an
/// index for listing a collection newest first.
///
/// `items_fts` is an external-content FTS5 table over `items.text` (rowid =
/// label), kept in step by triggers, so every write path (upsert, delete,
/// drop, re-index, cascades) updates it in the same transaction as `items`.
const SCHEMA_V1: &str = "
    CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(
        text, content = 'items', content_rowid = 'label',
        tokenize = 'unicode61 remove_diacritics 0'
    );
    CREATE TRIGGER IF NOT EXISTS items_fts_insert AFTER INSERT ON items
    WHEN new.text IS NOT NULL BEGIN
        INSERT INTO items_fts (rowid, text) VALUES (new.label, new.text);
    END;
    CREATE TRIGGER IF NOT EXISTS items_fts_delete AFTER DELETE ON items
    WHEN old.text IS NOT NULL BEGIN
        INSERT INTO items_fts (items_fts, rowid, text) VALUES ('delete', old.label, old.text);
    END;
    CREATE TRIGGER IF NOT EXISTS items_fts_update AFTER UPDATE OF text ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, text)
            SELECT 'delete', old.label, old.text WHERE old.text IS NOT NULL;
        INSERT INTO items_fts (rowid, text)
            SELECT new.label, new.text WHERE new.text IS NOT NULL;
    END;
    CREATE INDEX IF NOT EXISTS items_by_collection_label ON items (collection, label);
    INSERT INTO items_fts (items_fts) VALUES ('rebuild');
";

/// Bring an older database up to the current schema (`PRAGMA user_version`),
/// each step in one transaction, and attach the per-connection FTS5
/// vocabulary table.
pub(super) fn migrate(db: &Connection) -> Result<(), EmbedError> {
    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        let tx = db.unchecked_transaction()?;
        tx.execute_batch(SCHEMA_V1)?;
        tx.pragma_update(None, "user_version", 1)?;
        tx.commit()?;
        tracing::info!("embedding store migrated to schema 1 (full-text index of item texts)");
    }
    db.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.items_vocab USING fts5vocab(main, items_fts, row);",
    )?;
    Ok(())
}
