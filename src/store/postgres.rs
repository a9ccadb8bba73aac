//! The PostgreSQL connection pool every replica's shared parts use, and the
//! schema they agree on.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

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
    tls: MakeRustlsConnect,
}

/// A connection of its own (see [`Pg::dedicated`]): poll it, or spawn it.
pub type DedicatedConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// Where the certificate authorities are read from without `store.ca_file`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS side of every connection: used when the connection string asks
/// for it (`sslmode=require`; `prefer`, libpq's default, falls back to
/// plain text when the server has no TLS), the server's certificate checked
/// against `store.ca_file` or the system's authorities, and its name.
fn tls_connector(settings: &PostgresSettings) -> Result<MakeRustlsConnect, PgError> {
    let mut roots = rustls::RootCertStore::empty();
    let path = settings
        .ca_file
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(SYSTEM_CA_BUNDLE));
    if settings.ca_file.is_some() || path.exists() {
        let certs = CertificateDer::pem_file_iter(&path)
            .map_err(|e| PgError::Setup(format!("store.ca_file {}: {e}", path.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| PgError::Setup(format!("store.ca_file {}: {e}", path.display())))?;
            // A system bundle may hold certificates rustls cannot use: skip those.
            if let Err(e) = roots.add(cert)
                && settings.ca_file.is_some()
            {
                return Err(PgError::Setup(format!(
                    "store.ca_file {}: {e}",
                    path.display()
                )));
            }
        }
        if settings.ca_file.is_some() && roots.is_empty() {
            return Err(PgError::Setup(format!(
                "store.ca_file {}: no certificate in it",
                path.display()
            )));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PgError::Setup(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
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
        let tls = tls_connector(settings)?;
        let manager = Manager::from_config(
            config,
            tls.clone(),
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
            tls,
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
    ) -> Result<(tokio_postgres::Client, DedicatedConnection), PgError> {
        let config = tokio_postgres::Config::from_str(&self.settings.url)
            .map_err(|e| PgError::Setup(e.to_string()))?;
        let limit = self.settings.unavailable_after;
        tokio::time::timeout(limit, config.connect(self.tls.clone()))
            .await
            .map_err(|_| PgError::Timeout(limit))?
            .map_err(PgError::from)
    }
}
