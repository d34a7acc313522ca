//! The user service's Lambda entry point: everything is in the library
//! ([`user_service::api::App`] over [`user_service::store::DynamoUserStore`]).

use std::sync::Arc;

use user_service::api::App;
use user_service::store::DynamoUserStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    service_core::run("USERS_TABLE", |table, cursors| {
        App::new(Arc::new(DynamoUserStore::from_table(table)), cursors)
    })
    .await
}
