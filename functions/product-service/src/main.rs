//! The product service's Lambda entry point: read configuration, build the DynamoDB client once
//! per cold start, and serve requests with [`product_service::api::App`].

use std::sync::Arc;

use lambda_http::{run, service_fn, Error, Request};
use product_service::api::App;
use product_service::store::DynamoProductStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (client, table, cursors) = service_core::bootstrap("PRODUCTS_TABLE").await?;
    let app = Arc::new(App::new(
        Arc::new(DynamoProductStore::new(client, table)),
        cursors,
    ));
    run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(app.handle(request).await) }
    }))
    .await
}
