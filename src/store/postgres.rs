//! The PostgreSQL connection pool every replica's shared parts use, and the
//! schema they agree on.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::PostgresSettings;

/// A failure to reach or use the shared database.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("PostgreSQL pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Setup(String),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored value the code does not know (never read as permission).
    #[error("PostgreSQL: {0}")]
    Corrupt(String),
}

/// Connections per replica: the decision log's writer holds one, the
/// contact follower one, the rest serve requests and commands.
const POOL_SIZE: usize = 16;

/// The shared database, as one replica sees it.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    settings: PostgresSettings,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Pg {
    /// Builds the pool (connections open lazily) without touching the
    /// database; [`Pg::connect`] also checks it answers and migrates.
    ///
    /// # Errors
    /// [`PgError::Setup`] for a connection string that does not parse.
    pub fn pool(settings: &PostgresSettings) -> Result<Pg, PgError> {
        let mut config = tokio_postgres::Config::from_str(&settings.url).map_err(|e| {
            PgError::Setup(format!(
                "store.url {}: {e}",
                super::mask_password(&settings.url)
            ))
        })?;
        config.application_name(format!("dialgate {}", settings.replica_id));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.unavailable_after);
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(5));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.unavailable_after))
            .create_timeout(Some(settings.unavailable_after))
            .recycle_timeout(Some(settings.unavailable_after))
            .build()
            .map_err(|e| PgError::Setup(e.to_string()))?;
        Ok(Pg {
            pool,
            settings: settings.clone(),
        })
    }

    /// Connects, brings the schema up to date and registers this replica.
    ///
    /// # Errors
    /// [`PgError`] when the database cannot be reached within
    /// `unavailable_after` or refuses the schema.
    pub async fn connect(settings: &PostgresSettings) -> Result<Pg, PgError> {
        let pg = Pg::pool(settings)?;
        let mut client = pg.client().await?;
        super::schema::migrate(&mut client).await?;
        client
            .execute(
                "INSERT INTO replicas (replica_id, first_seen, last_seen) VALUES ($1, now(), now())
                 ON CONFLICT (replica_id) DO UPDATE SET last_seen = now()",
                &[&settings.replica_id],
            )
            .await?;
        Ok(pg)
    }

    /// A pooled connection, waiting at most `unavailable_after`.
    ///
    /// # Errors
    /// [`PgError::Pool`] when none could be had in time.
    pub async fn client(&self) -> Result<deadpool_postgres::Client, PgError> {
        Ok(self.pool.get().await?)
    }

    /// The settings this pool was built from.
    pub fn settings(&self) -> &PostgresSettings {
        &self.settings
    }

    /// This replica's name.
    pub fn replica_id(&self) -> &str {
        &self.settings.replica_id
    }

    /// Runs `work` with the database deadline: an answer later than
    /// `unavailable_after` counts as no answer.
    ///
    /// # Errors
    /// `work`'s error or [`PgError::Timeout`].
    pub async fn within<T, F>(&self, work: F) -> Result<T, PgError>
    where
        F: std::future::Future<Output = Result<T, PgError>>,
    {
        let limit = self.settings.unavailable_after;
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| PgError::Timeout(limit))?
    }

    /// A dedicated connection outside the pool (LISTEN needs its own).
    ///
    /// # Errors
    /// [`PgError`] when it cannot be opened.
    pub async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        PgError,
    > {
        let config = tokio_postgres::Config::from_str(&self.settings.url)
            .map_err(|e| PgError::Setup(e.to_string()))?;
        let limit = self.settings.unavailable_after;
        tokio::time::timeout(limit, config.connect(NoTls))
            .await
            .map_err(|_| PgError::Timeout(limit))?
            .map_err(PgError::from)
    }
}
