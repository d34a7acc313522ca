//! What the product service's binaries read from their environment at cold start, besides
//! what every function reads (`service_core::Settings`); template.yaml sets each on AWS, the
//! local stack writes them to its functions.env.

use crate::api::DEFAULT_MAX_AGE;
use crate::domain::DEFAULT_MAX_HOLD_SECONDS;

/// Why the product service refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("environment variable {0} must be set (template.yaml sets it on AWS)")]
    Missing(&'static str),
    #[error("{name} must be {what}, not {value:?}")]
    Invalid {
        name: &'static str,
        what: &'static str,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The reservations table (`RESERVATIONS_TABLE`).
    pub reservations_table: String,
    /// Seconds product reads stay fresh in the edge cache (`PRODUCT_CACHE_MAX_AGE`).
    pub max_age: u32,
    /// The longest hold a reservation may ask for (`RESERVATION_MAX_HOLD_SECONDS`).
    pub max_hold_seconds: u32,
}

impl Settings {
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let number = |name: &'static str, default: u32, min: u32| match lookup(name) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<u32>() {
                Ok(parsed) if parsed >= min => Ok(parsed),
                _ => Err(SettingsError::Invalid {
                    name,
                    what: if min == 0 {
                        "a number of seconds"
                    } else {
                        "a positive number of seconds"
                    },
                    value,
                }),
            },
        };
        Ok(Settings {
            reservations_table: lookup("RESERVATIONS_TABLE")
                .filter(|name| !name.trim().is_empty())
                .ok_or(SettingsError::Missing("RESERVATIONS_TABLE"))?,
            max_age: number("PRODUCT_CACHE_MAX_AGE", DEFAULT_MAX_AGE, 0)?,
            max_hold_seconds: number("RESERVATION_MAX_HOLD_SECONDS", DEFAULT_MAX_HOLD_SECONDS, 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use service_core::testkit::env_lookup as lookup;

    #[test]
    fn settings_have_defaults_and_refuse_nonsense() {
        assert_eq!(
            Settings::from_env(lookup(&[])),
            Err(SettingsError::Missing("RESERVATIONS_TABLE"))
        );
        let settings = Settings::from_env(lookup(&[("RESERVATIONS_TABLE", "R")])).unwrap();
        assert_eq!(
            (settings.max_age, settings.max_hold_seconds),
            (DEFAULT_MAX_AGE, DEFAULT_MAX_HOLD_SECONDS)
        );
        let set = Settings::from_env(lookup(&[
            ("RESERVATIONS_TABLE", "R"),
            ("PRODUCT_CACHE_MAX_AGE", "0"),
            ("RESERVATION_MAX_HOLD_SECONDS", "120"),
        ]))
        .unwrap();
        assert_eq!((set.max_age, set.max_hold_seconds), (0, 120));
        for (name, value) in [
            ("PRODUCT_CACHE_MAX_AGE", "soon"),
            ("RESERVATION_MAX_HOLD_SECONDS", "0"),
            ("RESERVATION_MAX_HOLD_SECONDS", "-5"),
        ] {
            let error = Settings::from_env(lookup(&[("RESERVATIONS_TABLE", "R"), (name, value)]))
                .unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
}
