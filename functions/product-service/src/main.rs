//! The product service's Lambda entry point: everything is in the library
//! ([`product_service::api::App`] over [`product_service::store::DynamoProductStore`]).

use std::sync::Arc;

use product_service::api::App;
use product_service::settings::Settings;
use product_service::store::DynamoProductStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (products, cursors) = service_core::bootstrap("PRODUCTS_TABLE").await?;
    let settings = Settings::from_env(|name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let reservations = products.with_name(&settings.reservations_table);
    let store = DynamoProductStore::from_tables(products, reservations);
    service_core::serve(
        App::new(Arc::new(store), cursors)
            .with_max_age(settings.max_age)
            .with_max_hold(settings.max_hold_seconds),
    )
    .await
}
