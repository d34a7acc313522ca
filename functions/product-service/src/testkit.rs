//! Values the product service's tests build again and again (feature `testkit`, for the
//! end-to-end store tests; always on in this crate's own tests).

use chrono::{DateTime, Utc};

use crate::domain::{Product, Reservation, ReservationStatus};

/// A new product with `stock` units, a unique id and SKU, no category and no reservations.
pub fn product(stock: u32) -> Product {
    let now = Utc::now();
    Product {
        id: uuid::Uuid::new_v4().to_string(),
        sku: format!("TK-{}", uuid::Uuid::new_v4().simple()).to_uppercase(),
        name: "Test lamp".into(),
        price_cents: 500,
        currency: "EUR".into(),
        stock,
        category: None,
        open_reservations: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// An open reservation of `quantity` units of `product` for `owner`, held until `hold_until`
/// (made ten seconds before it).
pub fn reservation(
    product: &Product,
    owner: &str,
    quantity: u32,
    hold_until: DateTime<Utc>,
) -> Reservation {
    Reservation {
        reservation_id: uuid::Uuid::new_v4().to_string(),
        product_id: product.id.clone(),
        owner: owner.into(),
        quantity,
        status: ReservationStatus::Open,
        created_at: hold_until - chrono::Duration::seconds(10),
        hold_until,
        ended_at: None,
    }
}
