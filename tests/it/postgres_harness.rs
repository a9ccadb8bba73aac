//! The PostgreSQL test harness itself, and the shared schema's first
//! contact with replicas (connecting, migrating, TLS).

use crate::postgres_server::PgServer;

/// The harness itself: a cluster starts, answers, stops and starts again.
#[test]
fn test_postgres_server_starts_answers_and_restarts() {
    let Some(pg) = PgServer::start() else { return };
    assert_eq!(pg.psql("SELECT 1"), "1");
    pg.stop();
    pg.start_again();
    assert_eq!(pg.psql("SELECT 2"), "2");
}

/// Two replicas connecting at once to a fresh database: the schema is
/// applied once, both are registered, a third connect changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_replicas_migrate_the_shared_schema_once() {
    let Some(pg) = PgServer::start() else { return };
    let settings = |id: &str| dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: id.to_string(),
        max_staleness: std::time::Duration::from_millis(1000),
        unavailable_after: std::time::Duration::from_millis(2000),
        ca_file: None,
    };
    let (one, two) = (settings("gw-1"), settings("gw-2"));
    let (a, b) = tokio::join!(
        dialgate::store::postgres::Pg::connect(&one),
        dialgate::store::postgres::Pg::connect(&two)
    );
    a.unwrap();
    b.unwrap();
    dialgate::store::postgres::Pg::connect(&settings("gw-1"))
        .await
        .unwrap();
    assert_eq!(
        pg.psql("SELECT string_agg(replica_id, ',' ORDER BY replica_id) FROM replicas"),
        "gw-1,gw-2"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM dialgate_schema WHERE id = '0001_replicas'"),
        "1"
    );
}

/// The database down: connecting fails within `unavailable_after`, not
/// after the operating system's TCP timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connect_to_a_stopped_database_fails_in_bounded_time() {
    let Some(pg) = PgServer::start() else { return };
    pg.stop();
    let settings = dialgate::store::PostgresSettings {
        url: pg.url(),
        replica_id: "gw-1".to_string(),
        max_staleness: std::time::Duration::from_millis(1000),
        unavailable_after: std::time::Duration::from_millis(500),
        ca_file: None,
    };
    let started = std::time::Instant::now();
    let err = dialgate::store::postgres::Pg::connect(&settings)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{err}"
    );
}

/// TLS to the database: with `sslmode=require` the connection is encrypted
/// and the server's certificate must chain to `store.ca_file` and name the
/// host; a server whose certificate does not is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tls_to_the_database_checks_the_server_certificate() {
    let Some(pg) = PgServer::start() else { return };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    pg.enable_tls(&cert.pem(), &key.serialize_pem());
    let dir = tempfile::tempdir().unwrap();
    let right_ca = dir.path().join("right.pem");
    std::fs::write(&right_ca, cert.pem()).unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&other_key)
        .unwrap();
    let wrong_ca = dir.path().join("wrong.pem");
    std::fs::write(&wrong_ca, other.pem()).unwrap();
    let settings = |ca: &std::path::Path| dialgate::store::PostgresSettings {
        url: format!(
            "postgres://dialgate@localhost:{}/dialgate?sslmode=require",
            pg.port()
        ),
        replica_id: "gw-tls".to_string(),
        max_staleness: std::time::Duration::from_millis(1000),
        unavailable_after: std::time::Duration::from_millis(2000),
        ca_file: Some(ca.to_path_buf()),
    };
    let shared = dialgate::store::postgres::Pg::connect(&settings(&right_ca))
        .await
        .unwrap();
    let encrypted: bool = shared
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);
    let err = dialgate::store::postgres::Pg::connect(&settings(&wrong_ca))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("password"), "{err}");
}
