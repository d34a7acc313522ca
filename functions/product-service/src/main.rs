//! The product service's Lambda entry point: everything is in the library
//! ([`product_service::api::App`] over [`product_service::store::DynamoProductStore`]).

use std::sync::Arc;

use product_service::api::App;
use product_service::store::DynamoProductStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // Seconds product reads stay fresh in the edge cache (template.yaml sets it).
    let max_age = match std::env::var("PRODUCT_CACHE_MAX_AGE") {
        Err(_) => product_service::api::DEFAULT_MAX_AGE,
        Ok(value) => value.trim().parse::<u32>().map_err(|_| {
            format!("PRODUCT_CACHE_MAX_AGE must be a number of seconds, not {value:?}")
        })?,
    };
    service_core::run("PRODUCTS_TABLE", |table, cursors| {
        App::new(Arc::new(DynamoProductStore::from_table(table)), cursors).with_max_age(max_age)
    })
    .await
}
