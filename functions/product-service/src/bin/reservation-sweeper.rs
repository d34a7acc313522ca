//! The reservation sweeper's Lambda entry point: a schedule (template.yaml) invokes it with an
//! EventBridge event; it expires the reservations whose hold ran out
//! ([`product_service::sweeper`]) and answers what it did.
//!
//! Locally: `curl -d '{}' localhost:9000/2015-03-31/functions/reservation-sweeper/invocations`
//! under `cargo lambda watch` (the local stack does this on an interval).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Utc;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};
use product_service::settings::Settings;
use product_service::store::DynamoProductStore;
use product_service::sweeper::{sweep, Sweep, BATCH, MAX_PER_SWEEP};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    service_core::telemetry::init();
    let settings = Settings::from_env(|name| std::env::var(name).ok())
        .inspect_err(|error| tracing::error!(%error, "cannot start"))?;
    let products = std::env::var("PRODUCTS_TABLE").map_err(|_| {
        let error =
            "environment variable PRODUCTS_TABLE must be set (template.yaml sets it on AWS)";
        tracing::error!(error, "cannot start");
        error
    })?;
    let store = DynamoProductStore::new(
        service_core::dynamo::client_from_env().await,
        products,
        settings.reservations_table,
    );
    let store = &store;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent>| async move {
            let outcome = sweep(store, Utc::now(), BATCH, MAX_PER_SWEEP).await;
            if let Ok(Sweep {
                expired,
                skipped,
                failed,
            }) = &outcome
            {
                tracing::info!(
                    schedule = event.payload.id.as_deref().unwrap_or("-"),
                    expired,
                    skipped,
                    failed,
                    "sweep done"
                );
            }
            service_core::telemetry::flush().await;
            outcome.map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
