//! The user service's Lambda entry point: read configuration, build the DynamoDB client once per
//! cold start, and serve requests with [`user_service::api::App`].

use std::sync::Arc;

use lambda_http::{run, service_fn, Error, Request};
use service_core::dynamo::{client_from_env, required_env};
use service_core::paging::CursorCodec;
use user_service::api::App;
use user_service::store::DynamoUserStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    service_core::telemetry::init();
    let table = required_env("USERS_TABLE")?;
    // Cursors are signed; without a configured secret the table name keys them, which still
    // detects corruption and cross-listing reuse.
    let cursor_key = std::env::var("CURSOR_SECRET").unwrap_or_else(|_| table.clone());
    let store = DynamoUserStore::new(client_from_env().await, table);
    let app = Arc::new(App::new(Arc::new(store), CursorCodec::new(cursor_key)));
    run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}
