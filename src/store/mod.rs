//! The backend choice (`[store]`, CONTRACT section 8): the embedded SQLite
//! store (default, one gateway) or PostgreSQL shared by several replicas.

pub mod database_epoch;
pub mod migrate;
pub mod postgres;
mod schema;

use std::time::Duration;

/// Where the records, the decision log and the snapshots are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreBackend {
    /// Files under `server.data_dir`: one gateway.
    #[default]
    Sqlite,
    /// One PostgreSQL database shared by every replica.
    Postgres(PostgresSettings),
}

/// `[store] backend = "postgres"`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// A libpq connection string or URL; may hold a password, so it is
    /// never printed whole (see [`PostgresSettings::shown_url`]).
    pub url: String,
    /// This replica's name, unique among the replicas of one database.
    pub replica_id: String,
    /// Contact data older than this on a replica: no decision (UNAVAILABLE).
    pub max_staleness: Duration,
    /// The database unreachable for this long: no decision (UNAVAILABLE).
    pub unavailable_after: Duration,
    /// Certificate authorities (PEM) the server's certificate must chain
    /// to; absent: the system's bundle.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.shown_url())
            .field("replica_id", &self.replica_id)
            .field("max_staleness", &self.max_staleness)
            .field("unavailable_after", &self.unavailable_after)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PostgresSettings {
    /// The URL with any password replaced by `***`, for logs and pages.
    pub fn shown_url(&self) -> String {
        mask_password(&self.url)
    }
}

/// A connection string with its password hidden, in either form libpq
/// accepts (`postgres://user:secret@host/db` or `password=secret ...`).
pub fn mask_password(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .map(|r| ("postgres://", r))
        .or_else(|| {
            url.strip_prefix("postgresql://")
                .map(|r| ("postgresql://", r))
        })
    {
        let (scheme, rest) = rest;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some(at) = authority.rfind('@') {
            let (userinfo, host) = authority.split_at(at);
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{scheme}{}:***{host}{}",
                    &userinfo[..colon],
                    mask_query(tail)
                );
            }
        }
        return format!("{scheme}{authority}{}", mask_query(tail));
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn mask_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn passwords_are_masked_in_both_forms() {
        assert_eq!(
            mask_password("postgres://gw:s3cret@db:5432/dialgate"),
            "postgres://gw:***@db:5432/dialgate"
        );
        assert_eq!(
            mask_password("postgresql://gw@db/dialgate?password=s3cret&sslmode=require"),
            "postgresql://gw@db/dialgate?password=***&sslmode=require"
        );
        assert_eq!(
            mask_password("host=/tmp user=gw password=s3cret dbname=d"),
            "host=/tmp user=gw password=*** dbname=d"
        );
        assert_eq!(
            mask_password("postgres://db/dialgate"),
            "postgres://db/dialgate"
        );
    }
}
