//! [`PgError`]: what can go wrong between OCG and PostgreSQL.

/// An error of the PostgreSQL store. Messages never hold the password of
/// the database URL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `OCG_DATABASE_URL` is not usable (the reason names what is wrong).
    #[error("OCG_DATABASE_URL: {0}")]
    Config(String),
    /// The TLS client could not be set up.
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    /// No connection could be had from the pool in time.
    #[error("no PostgreSQL connection: {0}")]
    Pool(String),
    /// The database refused or failed a statement.
    #[error("PostgreSQL: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The request is unusable (a bad collection name, a vector of the
    /// wrong length).
    #[error("{0}")]
    Invalid(String),
    /// The embedder could not embed the texts.
    #[error("embedding: {0}")]
    Embed(ocg_core::Error),
}

/// What the server said (its message and SQLSTATE), not only "db error".
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        PgError::Pool(error.to_string())
    }
}

impl From<PgError> for ocg_core::Error {
    fn from(error: PgError) -> Self {
        match error {
            PgError::Invalid(message) => ocg_core::Error::InvalidInput(message),
            PgError::Embed(error) => error,
            PgError::Pool(message) => ocg_core::Error::unavailable("postgres", message),
            PgError::Db(e) if e.as_db_error().is_none() => {
                ocg_core::Error::unavailable("postgres", e.to_string())
            }
            other => ocg_core::Error::Remote {
                code: "store_error".into(),
                message: other.to_string(),
            },
        }
    }
}
