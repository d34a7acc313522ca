//! Fuzz entry points for the product bodies (see `service_core::fuzzing`): any bytes are
//! either refused with a 4xx or validate into values that are already normalised.

use service_core::fuzzing::json_body;

use crate::domain::{
    validate_category, validate_currency, validate_name, validate_sku, CreateProduct,
    CreateReservation, ProductPatch, UpdateProduct, DEFAULT_MAX_HOLD_SECONDS,
    MAX_RESERVATION_QUANTITY,
};

/// A field validator: the normalised value or the client's error.
type Validator = fn(&str) -> Result<String, service_core::ApiError>;

fn assert_normalised(
    sku: Option<&str>,
    name: Option<&str>,
    currency: Option<&str>,
    category: Option<&str>,
) {
    let checks: [(Option<&str>, Validator); 4] = [
        (sku, validate_sku),
        (name, validate_name),
        (currency, validate_currency),
        (category, validate_category),
    ];
    for (value, validate) in checks {
        if let Some(value) = value {
            assert_eq!(validate(value).ok().as_deref(), Some(value));
        }
    }
}

/// `POST /products` bodies.
pub fn create(data: &[u8]) {
    if let Some(product) = json_body(data, CreateProduct::validate) {
        assert_normalised(
            Some(&product.sku),
            Some(&product.name),
            Some(&product.currency),
            product.category.as_deref(),
        );
    }
}

/// `PATCH /products/{id}` bodies.
pub fn update(data: &[u8]) {
    if let Some(patch) = json_body(data, UpdateProduct::validate) {
        assert_ne!(patch, ProductPatch::default());
        assert_normalised(
            None,
            patch.name.as_deref(),
            patch.currency.as_deref(),
            patch.category.clone().flatten().as_deref(),
        );
    }
}

/// `POST /products/{id}/reservations` bodies.
pub fn reserve(data: &[u8]) {
    let validate = |input: CreateReservation| input.validate(DEFAULT_MAX_HOLD_SECONDS);
    if let Some(reservation) = json_body(data, validate) {
        assert!((1..=MAX_RESERVATION_QUANTITY).contains(&reservation.quantity));
        assert!((1..=DEFAULT_MAX_HOLD_SECONDS).contains(&reservation.hold_seconds));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use service_core::fuzzing::replay;

    #[test]
    fn fuzz_seeds_hold() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        assert!(replay(&seeds.join("product_create"), super::create) > 0);
        assert!(replay(&seeds.join("product_update"), super::update) > 0);
        assert!(replay(&seeds.join("reservation"), super::reserve) > 0);
    }
}
