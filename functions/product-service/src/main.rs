//! The product service's Lambda entry point: everything is in the library
//! ([`product_service::api::App`] over [`product_service::store::DynamoProductStore`]).

use std::sync::Arc;

use product_service::api::App;
use product_service::settings;
use product_service::store::DynamoProductStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings = settings::Settings::from_env(|name| std::env::var(name).ok())?;
    service_core::run("PRODUCTS_TABLE", |products, cursors| {
        let reservations = products.with_name(&settings.reservations_table);
        App::new(
            Arc::new(DynamoProductStore::from_tables(products, reservations)),
            cursors,
        )
        .with_max_age(settings.max_age)
        .with_max_hold(settings.max_hold_seconds)
    })
    .await
}
