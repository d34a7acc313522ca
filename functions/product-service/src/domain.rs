//! Products, reservations and the rules their fields follow. Pure code, tested without a store.
//!
//! Money is an integer number of minor units (`price_cents`) with an ISO 4217 currency code,
//! never a float.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use service_core::body::not_null;
use service_core::http::Versioned;
use service_core::{validate, ApiError, StoreError};

pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_CATEGORY_CHARS: usize = 64;
pub const MAX_RESERVATION_QUANTITY: u32 = 1000;
/// How long a reservation holds its stock unless the request says (`hold_seconds`).
pub const DEFAULT_HOLD_SECONDS: u32 = 900;
/// The longest hold a request may ask for unless `RESERVATION_MAX_HOLD_SECONDS` says.
pub const DEFAULT_MAX_HOLD_SECONDS: u32 = 3600;
/// The scope that lets a caller see, release and confirm anyone's reservations (support
/// staff, the checkout orchestration); everyone else sees only their own.
pub const ADMIN_SCOPE: &str = "reservations-admin";

mod reservation;

pub use reservation::{CreateReservation, Ending, NewReservation, Reservation, ReservationStatus};

/// What a write to a product or its reservations can meet besides bad input: the outcomes the
/// store reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// No such product, or no such reservation (or not one the caller may see).
    #[error("not found")]
    NotFound,
    /// Another product holds the SKU.
    #[error("sku taken")]
    SkuTaken,
    /// Fewer units in stock than the reservation asks for.
    #[error("insufficient stock")]
    InsufficientStock,
    /// A product with open reservations cannot be deleted.
    #[error("has open reservations")]
    HasOpenReservations,
    /// Releasing would take stock past its maximum.
    #[error("stock overflow")]
    StockOverflow,
    /// The reservation has already ended (released, confirmed, or its hold ran out).
    #[error("reservation is {0}")]
    ReservationEnded(ReservationStatus),
    /// Other transactions on the same product kept winning; the client may retry.
    #[error("contended")]
    Contended,
    /// Any store's outcomes: a lost race (`VersionMismatch`), an unreachable database, ...
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ProductError> for ApiError {
    fn from(error: ProductError) -> ApiError {
        match error {
            ProductError::NotFound => ApiError::NotFound,
            ProductError::SkuTaken => {
                ApiError::conflict("sku_taken", "a product with this sku already exists")
            }
            ProductError::InsufficientStock => ApiError::conflict(
                "insufficient_stock",
                "not enough stock for this reservation",
            ),
            ProductError::HasOpenReservations => ApiError::conflict(
                "has_open_reservations",
                "the product has open reservations; they must end before it can be deleted",
            ),
            ProductError::StockOverflow => ApiError::conflict(
                "stock_overflow",
                "releasing this reservation would take stock past its maximum",
            ),
            ProductError::ReservationEnded(status) => {
                let code = match status {
                    ReservationStatus::Confirmed => "reservation_confirmed",
                    ReservationStatus::Released => "reservation_released",
                    // An open one is "ended" only when its hold has run out.
                    ReservationStatus::Expired | ReservationStatus::Open => "reservation_expired",
                };
                let status = match status {
                    ReservationStatus::Open => ReservationStatus::Expired,
                    other => other,
                };
                ApiError::conflict(code, format!("the reservation is already {status}"))
            }
            ProductError::Contended => ApiError::conflict(
                "write_contended",
                "too many concurrent changes to this product; try again",
            ),
            ProductError::Store(error) => error.into(),
        }
    }
}

/// A stored product, exactly as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub price_cents: u64,
    pub currency: String,
    /// Units available to reserve.
    pub stock: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Reservations taken and not yet released.
    #[serde(default)]
    pub open_reservations: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Versioned for Product {
    fn version(&self) -> u64 {
        self.version
    }
}

/// Body of `POST /products`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    pub sku: String,
    pub name: String,
    pub price_cents: u64,
    pub currency: String,
    pub stock: u32,
    #[serde(default)]
    pub category: Option<String>,
}

/// Body of `PATCH /products/{id}`: any subset of the mutable fields; `"category": null` removes
/// the category (the only field that can be removed: `null` for any other is refused). The SKU
/// is the product's external identity and cannot change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[serde(default)]
    pub sku: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub price_cents: Option<u64>,
    #[serde(default, deserialize_with = "not_null")]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub stock: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub category: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Validated input for a new product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub price_cents: u64,
    pub currency: String,
    pub stock: u32,
    pub category: Option<String>,
}

/// A validated change to a product.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price_cents: Option<u64>,
    pub currency: Option<String>,
    pub stock: Option<u32>,
    pub category: Option<Option<String>>,
}

impl CreateProduct {
    pub fn validate(self) -> Result<NewProduct, ApiError> {
        Ok(NewProduct {
            sku: validate_sku(&self.sku)?,
            name: validate_name(&self.name)?,
            price_cents: self.price_cents,
            currency: validate_currency(&self.currency)?,
            stock: self.stock,
            category: self
                .category
                .as_deref()
                .map(validate_category)
                .transpose()?,
        })
    }
}

impl UpdateProduct {
    pub fn validate(self) -> Result<ProductPatch, ApiError> {
        if self.sku.is_some() {
            return Err(ApiError::invalid_field("sku", "cannot be changed"));
        }
        let patch = ProductPatch {
            name: self.name.as_deref().map(validate_name).transpose()?,
            price_cents: self.price_cents,
            currency: self
                .currency
                .as_deref()
                .map(validate_currency)
                .transpose()?,
            stock: self.stock,
            category: match self.category {
                None => None,
                Some(None) => Some(None),
                Some(Some(category)) => Some(Some(validate_category(&category)?)),
            },
        };
        if patch == ProductPatch::default() {
            return Err(ApiError::invalid_field(
                "body",
                "must contain at least one of `name`, `price_cents`, `currency`, `stock`, `category`",
            ));
        }
        Ok(patch)
    }
}

impl ProductPatch {
    /// The product after this patch, with a new version and `updated_at`.
    pub fn apply_at(&self, product: &Product, now: DateTime<Utc>) -> Product {
        Product {
            name: self.name.clone().unwrap_or_else(|| product.name.clone()),
            price_cents: self.price_cents.unwrap_or(product.price_cents),
            currency: self
                .currency
                .clone()
                .unwrap_or_else(|| product.currency.clone()),
            stock: self.stock.unwrap_or(product.stock),
            category: self
                .category
                .clone()
                .unwrap_or_else(|| product.category.clone()),
            updated_at: now,
            version: product.version + 1,
            ..product.clone()
        }
    }
}

/// 1 to 64 characters of `A-Z`, `0-9` and `-`.
pub fn validate_sku(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_SKU_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ApiError::invalid_field(
            "sku",
            format!("must be 1 to {MAX_SKU_CHARS} characters of A-Z, 0-9 and -"),
        ))
    }
}

/// Trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
pub fn validate_name(raw: &str) -> Result<String, ApiError> {
    validate::name(raw, MAX_NAME_CHARS)
}

/// The currencies of ISO 4217's active list (the current and the funds codes; not the
/// precious metals, bond units, SDR, test or "no currency" codes, which price nothing),
/// sorted for a binary search.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// A currency of the ISO 4217 list, as its three upper-case letters (`EUR`).
pub fn validate_currency(raw: &str) -> Result<String, ApiError> {
    if ISO_4217.binary_search(&raw).is_ok() {
        Ok(raw.to_string())
    } else {
        Err(ApiError::invalid_field(
            "currency",
            "must be an ISO 4217 currency code, such as EUR or USD",
        ))
    }
}

/// 1 to 64 characters of letters, digits, `-` and `_`.
pub fn validate_category(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_CATEGORY_CHARS
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ApiError::invalid_field(
            "category",
            format!("must be 1 to {MAX_CATEGORY_CHARS} characters of letters, digits, - and _"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        for good in ["A", "ABC-123", &"Z".repeat(64)] {
            assert!(validate_sku(good).is_ok(), "{good}");
        }
        for bad in ["", "abc", "A B", "A_B", &"Z".repeat(65), "Ä", "A\u{0}"] {
            assert!(validate_sku(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currencies() {
        for good in ["EUR", "USD", "JPY", "CHF", "XOF"] {
            assert!(validate_currency(good).is_ok(), "{good}");
        }
        // Three capitals are not enough: the code must be on the list.
        for bad in ["eur", "EU", "EURO", "E1R", "", "XYZ", "ABC", "XXX", "XAU"] {
            assert!(validate_currency(bad).is_err(), "{bad}");
        }
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
    }

    #[test]
    fn names_and_categories() {
        assert_eq!(validate_name("  Lamp ").unwrap(), "Lamp");
        assert!(validate_name(&"x".repeat(201)).is_err());
        assert!(validate_name(" ").is_err());
        assert!(validate_category("home-garden_2").is_ok());
        assert!(validate_category("a/b").is_err());
        assert!(validate_category("").is_err());
    }

    #[test]
    fn patch_rules() {
        let sku_change: UpdateProduct = serde_json::from_str(r#"{"sku":"X"}"#).unwrap();
        assert!(sku_change
            .validate()
            .unwrap_err()
            .public_message()
            .contains("`sku`"));
        let empty: UpdateProduct = serde_json::from_str("{}").unwrap();
        assert!(empty.validate().is_err());
        let clear: UpdateProduct = serde_json::from_str(r#"{"category":null}"#).unwrap();
        assert_eq!(clear.validate().unwrap().category, Some(None));
        let absent: UpdateProduct = serde_json::from_str(r#"{"stock":3}"#).unwrap();
        assert_eq!(absent.validate().unwrap().category, None);
    }

    #[test]
    fn patch_apply_keeps_identity_and_counts() {
        let now = Utc::now();
        let product = Product {
            id: "p".into(),
            sku: "SKU-1".into(),
            name: "Lamp".into(),
            price_cents: 1999,
            currency: "EUR".into(),
            stock: 5,
            category: Some("home".into()),
            open_reservations: 2,
            created_at: now,
            updated_at: now,
            version: 3,
        };
        let patch = ProductPatch {
            stock: Some(9),
            category: Some(None),
            ..Default::default()
        };
        let next = patch.apply_at(&product, now);
        assert_eq!(
            (next.stock, next.category.clone(), next.version),
            (9, None, 4)
        );
        assert_eq!((next.sku.as_str(), next.open_reservations), ("SKU-1", 2));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn skus_match_their_rule(raw in "\\PC{0,80}") {
            let expected = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
            prop_assert_eq!(validate_sku(&raw).is_ok(), expected);
        }

        #[test]
        fn accepted_currencies_are_three_capitals(raw in "\\PC{0,6}") {
            if validate_currency(&raw).is_ok() {
                prop_assert!(raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()));
            }
        }
    }
}
