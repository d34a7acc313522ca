//! Reservations: the request, the states a reservation goes through, and the rules for
//! ending one. Pure code, tested without a store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_core::body::not_null;
use service_core::ApiError;

use super::{ProductError, DEFAULT_HOLD_SECONDS, MAX_RESERVATION_QUANTITY};

/// Body of `POST /products/{id}/reservations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    pub quantity: u32,
    /// Seconds the stock is held (default [`DEFAULT_HOLD_SECONDS`], at most the configured
    /// maximum); confirm before then, or the hold ends and the stock goes back.
    #[serde(default, deserialize_with = "not_null")]
    pub hold_seconds: Option<u32>,
}

/// A validated reservation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewReservation {
    pub quantity: u32,
    pub hold_seconds: u32,
}

/// Where a reservation is in its life. Only `open` holds stock that can still come back;
/// the other three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding its stock until `hold_until`.
    Open,
    /// A sale: the stock stays taken, the hold is over.
    Confirmed,
    /// Given up by its owner: the stock went back.
    Released,
    /// Its hold ran out: the stock went back (or goes back at the next sweep).
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Open => "open",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<ReservationStatus> {
        [
            ReservationStatus::Open,
            ReservationStatus::Confirmed,
            ReservationStatus::Released,
            ReservationStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == raw)
    }
}

impl std::fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an open reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its owner gives it up before the hold ends: the stock goes back.
    Release,
    /// Its owner buys it before the hold ends: the stock stays taken.
    Confirm,
    /// Its hold has ended: the stock goes back (the sweeper).
    Expire,
}

impl Ending {
    /// The status a reservation has after ending this way.
    pub fn status(self) -> ReservationStatus {
        match self {
            Ending::Release => ReservationStatus::Released,
            Ending::Confirm => ReservationStatus::Confirmed,
            Ending::Expire => ReservationStatus::Expired,
        }
    }

    /// Whether the reserved units go back to stock.
    pub fn returns_stock(self) -> bool {
        self != Ending::Confirm
    }
}

/// A reservation as stored: `status` is what was last written; [`Reservation::status_at`]
/// is what it is now (an open one past its hold is expired, swept or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub product_id: String,
    /// Who made it: the identity the edge proxy verified (`api-key:dev-client`, `jwt:alice`).
    pub owner: String,
    pub quantity: u32,
    pub status: ReservationStatus,
    pub created_at: DateTime<Utc>,
    pub hold_until: DateTime<Utc>,
    /// When it was released, confirmed or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl Reservation {
    /// The reservation's status at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> ReservationStatus {
        match self.status {
            ReservationStatus::Open if self.hold_until <= now => ReservationStatus::Expired,
            status => status,
        }
    }

    /// The reservation as a client sees it at `now`.
    pub fn at(&self, now: DateTime<Utc>) -> Reservation {
        Reservation {
            status: self.status_at(now),
            ..self.clone()
        }
    }

    /// Whether ending it as `ending` at `now` is allowed: it must be open, and release and
    /// confirm come before the hold ends, expiry at or after.
    pub fn may_end(&self, ending: Ending, now: DateTime<Utc>) -> Result<(), ProductError> {
        if self.status != ReservationStatus::Open {
            return Err(ProductError::ReservationEnded(self.status));
        }
        let past_hold = self.hold_until <= now;
        match (ending, past_hold) {
            (Ending::Expire, true) | (Ending::Release | Ending::Confirm, false) => Ok(()),
            (Ending::Expire, false) => Err(ProductError::ReservationEnded(ReservationStatus::Open)),
            (_, true) => Err(ProductError::ReservationEnded(ReservationStatus::Expired)),
        }
    }

    /// The reservation after ending as `ending` at `now`.
    pub fn ended(&self, ending: Ending, now: DateTime<Utc>) -> Reservation {
        Reservation {
            status: ending.status(),
            ended_at: Some(now),
            ..self.clone()
        }
    }
}

impl CreateReservation {
    /// The request, checked: a quantity from 1 to [`MAX_RESERVATION_QUANTITY`], a hold from 1
    /// second to `max_hold_seconds`.
    pub fn validate(self, max_hold_seconds: u32) -> Result<NewReservation, ApiError> {
        if !(1..=MAX_RESERVATION_QUANTITY).contains(&self.quantity) {
            return Err(ApiError::invalid_field(
                "quantity",
                format!("must be an integer from 1 to {MAX_RESERVATION_QUANTITY}"),
            ));
        }
        let hold_seconds = self
            .hold_seconds
            .unwrap_or(DEFAULT_HOLD_SECONDS.min(max_hold_seconds));
        if !(1..=max_hold_seconds).contains(&hold_seconds) {
            return Err(ApiError::invalid_field(
                "hold_seconds",
                format!("must be an integer from 1 to {max_hold_seconds}"),
            ));
        }
        Ok(NewReservation {
            quantity: self.quantity,
            hold_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DEFAULT_MAX_HOLD_SECONDS;

    fn reservation_request(quantity: u32, hold_seconds: Option<u32>) -> CreateReservation {
        CreateReservation {
            quantity,
            hold_seconds,
        }
    }

    #[test]
    fn reservation_quantity_and_hold_bounds() {
        let max = DEFAULT_MAX_HOLD_SECONDS;
        assert!(reservation_request(0, None).validate(max).is_err());
        assert!(reservation_request(1001, None).validate(max).is_err());
        let default = reservation_request(1, None).validate(max).unwrap();
        assert_eq!(
            (default.quantity, default.hold_seconds),
            (1, DEFAULT_HOLD_SECONDS)
        );
        assert_eq!(
            reservation_request(1000, Some(2))
                .validate(max)
                .unwrap()
                .hold_seconds,
            2
        );
        for bad in [0, max + 1] {
            let error = reservation_request(1, Some(bad)).validate(max).unwrap_err();
            assert!(error.public_message().contains("`hold_seconds`"), "{bad}");
        }
        // A maximum below the default hold caps the default.
        assert_eq!(
            reservation_request(1, None)
                .validate(60)
                .unwrap()
                .hold_seconds,
            60
        );
        let null: Result<CreateReservation, _> =
            serde_json::from_str(r#"{"quantity":1,"hold_seconds":null}"#);
        assert!(null.is_err(), "null is not a hold");
    }

    fn open_reservation(hold_until: DateTime<Utc>) -> Reservation {
        Reservation {
            reservation_id: "r".into(),
            product_id: "p".into(),
            owner: "jwt:alice".into(),
            quantity: 2,
            status: ReservationStatus::Open,
            created_at: hold_until - chrono::Duration::seconds(60),
            hold_until,
            ended_at: None,
        }
    }

    #[test]
    fn a_hold_that_ran_out_reads_expired_and_ends_only_by_expiry() {
        let now = Utc::now();
        let running = open_reservation(now + chrono::Duration::seconds(1));
        assert_eq!(running.status_at(now), ReservationStatus::Open);
        assert_eq!(running.may_end(Ending::Release, now), Ok(()));
        assert_eq!(running.may_end(Ending::Confirm, now), Ok(()));
        assert_eq!(
            running.may_end(Ending::Expire, now),
            Err(ProductError::ReservationEnded(ReservationStatus::Open))
        );
        // At the hold's last instant it is over.
        let over = open_reservation(now);
        assert_eq!(over.status_at(now), ReservationStatus::Expired);
        assert_eq!(over.at(now).status, ReservationStatus::Expired);
        assert_eq!(over.may_end(Ending::Expire, now), Ok(()));
        for ending in [Ending::Release, Ending::Confirm] {
            assert_eq!(
                over.may_end(ending, now),
                Err(ProductError::ReservationEnded(ReservationStatus::Expired))
            );
        }
        // Ended is final, whatever the clock says.
        let confirmed = running.ended(Ending::Confirm, now);
        assert_eq!(
            (confirmed.status, confirmed.ended_at),
            (ReservationStatus::Confirmed, Some(now))
        );
        assert_eq!(
            confirmed.status_at(now + chrono::Duration::days(1)),
            ReservationStatus::Confirmed
        );
        for ending in [Ending::Release, Ending::Confirm, Ending::Expire] {
            assert_eq!(
                confirmed.may_end(ending, now),
                Err(ProductError::ReservationEnded(ReservationStatus::Confirmed))
            );
        }
    }

    #[test]
    fn ended_reservations_are_conflicts_with_a_code_per_state() {
        for (status, code) in [
            (ReservationStatus::Confirmed, "reservation_confirmed"),
            (ReservationStatus::Released, "reservation_released"),
            (ReservationStatus::Expired, "reservation_expired"),
            (ReservationStatus::Open, "reservation_expired"),
        ] {
            let error = ApiError::from(ProductError::ReservationEnded(status));
            assert_eq!((error.status().as_u16(), error.code()), (409, code));
        }
        assert_eq!(
            ApiError::from(ProductError::Contended).status().as_u16(),
            409
        );
        for status in ["open", "confirmed", "released", "expired"] {
            assert_eq!(ReservationStatus::parse(status).unwrap().as_str(), status);
        }
        assert_eq!(ReservationStatus::parse("OPEN"), None);
    }
}
