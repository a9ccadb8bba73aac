//! The writer's clock against the database's. Every replica stamps its
//! decisions with its own clock and counts attempt caps back from it: a
//! replica whose clock runs ahead would stop counting ALLOWs still inside
//! the window, one behind would stamp them early. Each batch reads the
//! database's clock in the statement that takes its locks; a replica off
//! by more than [`MAX_CLOCK_SKEW`] logs nothing (its callers get
//! UNAVAILABLE) until the clocks agree again, and the caps count with that
//! tolerance added to their window (stricter, never looser).

use jiff::{SignedDuration, Timestamp};

use crate::store::postgres::PgError;

/// The largest difference tolerated between this host's clock and the
/// database's (a constant: NTP keeps hosts well inside it).
pub(crate) const MAX_CLOCK_SKEW: SignedDuration = SignedDuration::from_millis(500);

/// The database's `clock_timestamp()` in microseconds since the epoch.
pub(crate) const DB_NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// How far the database's clock is off this host's: `db_first` was read
/// by a statement sent at `sent` and answered at `received` (both local),
/// `waited` (database time) after it was read (lock waits). Zero when the
/// reading fits the interval it was taken in; positive when the database
/// is ahead, negative when behind.
pub(crate) fn clock_skew(
    sent: Timestamp,
    received: Timestamp,
    db_first: Timestamp,
    waited: SignedDuration,
) -> SignedDuration {
    let waited = waited.max(SignedDuration::ZERO);
    let latest = (received - waited).max(sent);
    if db_first < sent {
        db_first.duration_since(sent)
    } else if db_first > latest {
        db_first.duration_since(latest)
    } else {
        SignedDuration::ZERO
    }
}

/// Refuses a skew over `tolerance`, naming it.
///
/// # Errors
/// [`PgError::Setup`] naming the skew.
pub(crate) fn check_skew(skew: SignedDuration, tolerance: SignedDuration) -> Result<(), PgError> {
    if skew.abs() <= tolerance {
        return Ok(());
    }
    Err(PgError::Setup(format!(
        "clock skew: the database's clock is {} ms {} this host's (at most {} ms tolerated): no decision is logged until the clocks agree (check NTP on this host and the database server)",
        skew.abs().as_millis(),
        if skew.is_negative() {
            "behind"
        } else {
            "ahead of"
        },
        tolerance.as_millis()
    )))
}

/// Reads the database's clock on `client` and checks it against this
/// host's (the writer's idle probe: readiness follows the clocks too).
///
/// # Errors
/// [`PgError`] when the database does not answer or the skew is too large.
pub(crate) async fn probe(client: &tokio_postgres::Client) -> Result<(), PgError> {
    check_skew(read_skew(client).await?, MAX_CLOCK_SKEW)
}

/// How far the database's clock is off this host's, read on `client` (a
/// connection or a transaction): see [`clock_skew`].
///
/// # Errors
/// [`PgError`] when the database does not answer or its clock is out of range.
pub(crate) async fn read_skew(
    client: &impl tokio_postgres::GenericClient,
) -> Result<SignedDuration, PgError> {
    let sent = Timestamp::now();
    let row = client
        .query_one(&format!("SELECT {DB_NOW_US}"), &[])
        .await?;
    let received = Timestamp::now();
    let db = db_timestamp(row.try_get(0)?)?;
    Ok(clock_skew(sent, received, db, SignedDuration::ZERO))
}

/// A database clock reading in microseconds.
///
/// # Errors
/// [`PgError::Corrupt`] when out of range.
pub(crate) fn db_timestamp(us: i64) -> Result<Timestamp, PgError> {
    Timestamp::from_microsecond(us)
        .map_err(|_| PgError::Corrupt(format!("database clock {us} µs out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_skew_outside_the_round_trip_is_refused() {
        let sent: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let received = sent + SignedDuration::from_millis(20);
        let ms = SignedDuration::from_millis;
        // Inside the round trip: no skew.
        assert_eq!(
            clock_skew(sent, received, sent + ms(10), ms(0)),
            SignedDuration::ZERO
        );
        // The database 700 ms ahead, or behind.
        let ahead = clock_skew(sent, received, received + ms(700), ms(0));
        assert_eq!(ahead, ms(700));
        assert!(check_skew(ahead, MAX_CLOCK_SKEW).is_err());
        let behind = clock_skew(sent, received, sent - ms(600), ms(0));
        assert_eq!(behind, ms(-600));
        let err = check_skew(behind, MAX_CLOCK_SKEW).unwrap_err().to_string();
        assert!(err.contains("600 ms behind"), "{err}");
        assert!(check_skew(ms(-400), MAX_CLOCK_SKEW).is_ok());
        // A lock wait does not hide a skew: the first reading came before it.
        let waited = sent + ms(2_000);
        assert_eq!(
            clock_skew(sent, waited, sent + ms(1_900), ms(1_980)),
            ms(1_880),
            "read 1.9 s after the request left, but the wait came after it"
        );
        assert_eq!(
            clock_skew(sent, waited, sent + ms(10), ms(1_980)),
            SignedDuration::ZERO
        );
    }
}
