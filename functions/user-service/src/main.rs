//! The user service's Lambda entry point: read configuration, build the DynamoDB client once
//! per cold start, and serve requests with [`user_service::api::App`].

use std::sync::Arc;

use lambda_http::{run, service_fn, Error, Request};
use user_service::api::App;
use user_service::store::DynamoUserStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (client, table, cursors) = service_core::bootstrap("USERS_TABLE").await?;
    let app = Arc::new(App::new(
        Arc::new(DynamoUserStore::new(client, table)),
        cursors,
    ));
    run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}
