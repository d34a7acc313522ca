//! The product service's Lambda entry point: everything is in the library
//! ([`product_service::api::App`] over [`product_service::store::DynamoProductStore`]).

use std::sync::Arc;

use product_service::api::App;
use product_service::store::DynamoProductStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    service_core::run("PRODUCTS_TABLE", |table, cursors| {
        App::new(Arc::new(DynamoProductStore::from_table(table)), cursors)
    })
    .await
}
