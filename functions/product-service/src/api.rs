//! Routing and handlers: the HTTP face of the product service.
//!
//! Paths are the function's own (`/products…`); the edge proxy strips its `/api` prefix. Errors
//! become responses in exactly one place, [`App::handle`].

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use service_core::body::parse_json;
use service_core::http::{json, no_content, with_version, Precondition};
use service_core::paging::{parse_limit, CursorCodec};
use service_core::{telemetry, ApiError};

use crate::domain::{
    validate_category, CreateProduct, CreateReservation, Product, Reservation, UpdateProduct,
};
use crate::store::{has_open_reservations, ProductStore};

/// How often a write without `If-Match` re-reads and re-applies after losing a race.
const UPDATE_ATTEMPTS: usize = 5;

pub struct App {
    store: Arc<dyn ProductStore>,
    cursors: CursorCodec,
}

/// True for ids this service could have minted (UUIDs); anything else is not looked up.
fn is_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

impl App {
    pub fn new(store: Arc<dyn ProductStore>, cursors: CursorCodec) -> Self {
        App { store, cursors }
    }

    /// Handles one request; never fails (errors become JSON responses).
    pub async fn handle(&self, request: Request) -> Response<Body> {
        telemetry::handle_request(request, |request| self.route(request)).await
    }

    async fn route(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let path = request.uri().path().trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let method = request.method().clone();
        match segments.as_slice() {
            ["health"] => match method {
                Method::GET => Ok(service_core::http::health()),
                _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
            },
            ["products"] => match method {
                Method::GET => self.list(&request).await,
                Method::POST => self.create(&request).await,
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, POST",
                }),
            },
            ["products", id] => match method {
                Method::GET => self.get(id).await,
                Method::PATCH => self.update(id, &request).await,
                Method::DELETE => self.delete(id, &request).await,
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, PATCH, DELETE",
                }),
            },
            ["products", id, "reservations"] => match method {
                Method::POST => self.reserve(id, &request).await,
                _ => Err(ApiError::MethodNotAllowed { allow: "POST" }),
            },
            ["products", id, "reservations", reservation_id] => match method {
                Method::DELETE => self.release(id, reservation_id).await,
                _ => Err(ApiError::MethodNotAllowed { allow: "DELETE" }),
            },
            _ => Err(ApiError::NotFound),
        }
    }

    async fn create(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateProduct = parse_json(request.headers(), request.body())?;
        let new = input.validate()?;
        let now = Utc::now();
        let product = Product {
            id: uuid::Uuid::new_v4().to_string(),
            sku: new.sku,
            name: new.name,
            price_cents: new.price_cents,
            currency: new.currency,
            stock: new.stock,
            category: new.category,
            open_reservations: 0,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.store.create(&product).await?;
        tracing::info!(product_id = %product.id, "product created");
        let location = format!("/products/{}", product.id);
        Ok(with_version(
            json(StatusCode::CREATED, &product),
            product.version,
            Some(&location),
        ))
    }

    async fn get(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let product = self.find(id).await?;
        Ok(with_version(
            json(StatusCode::OK, &product),
            product.version,
            None,
        ))
    }

    async fn list(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let query = request.query_string_parameters();
        for name in ["limit", "cursor", "category"] {
            if query.all(name).is_some_and(|values| values.len() > 1) {
                return Err(ApiError::invalid_query(name, "must be given at most once"));
            }
        }
        let limit = parse_limit(query.first("limit"))?;
        let category = query
            .first("category")
            .map(|c| {
                validate_category(c)
                    .map_err(|_| ApiError::invalid_query("category", "is not a valid category"))
            })
            .transpose()?;
        let scope = match &category {
            Some(category) => format!("products|category={category}"),
            None => "products".to_string(),
        };
        let after = query
            .first("cursor")
            .map(|cursor| self.cursors.decode(&scope, cursor))
            .transpose()?;
        let page = self
            .store
            .list(limit, after.as_deref(), category.as_deref())
            .await?;
        Ok(json(StatusCode::OK, &page.into_body(&self.cursors, &scope)))
    }

    async fn update(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: UpdateProduct = parse_json(request.headers(), request.body())?;
        let patch = input.validate()?;
        let precondition = Precondition::from_headers(request.headers());
        let updated = precondition
            .retry_lost_races(UPDATE_ATTEMPTS, || async {
                let current = self.find(id).await?;
                precondition.check(current.version)?;
                let next = patch.apply(&current, Utc::now());
                self.store.replace(&current, &next).await?;
                Ok(next)
            })
            .await?;
        Ok(with_version(
            json(StatusCode::OK, &updated),
            updated.version,
            None,
        ))
    }

    async fn delete(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let precondition = Precondition::from_headers(request.headers());
        precondition
            .retry_lost_races(UPDATE_ATTEMPTS, || async {
                let current = self.find(id).await?;
                precondition.check(current.version)?;
                if current.open_reservations > 0 {
                    return Err(has_open_reservations());
                }
                self.store.delete(&current).await
            })
            .await?;
        Ok(no_content())
    }

    async fn reserve(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateReservation = parse_json(request.headers(), request.body())?;
        let quantity = input.validate()?;
        if !is_id(id) {
            return Err(ApiError::NotFound);
        }
        let reservation_id = uuid::Uuid::new_v4().to_string();
        let remaining_stock = self.store.reserve(id, &reservation_id, quantity).await?;
        tracing::info!(product_id = %id, %reservation_id, quantity, remaining_stock, "stock reserved");
        let location = format!("/products/{id}/reservations/{reservation_id}");
        let reservation = Reservation {
            reservation_id,
            product_id: id.to_string(),
            quantity,
            remaining_stock,
        };
        let mut response = json(StatusCode::CREATED, &reservation);
        if let Ok(value) = location.parse() {
            response
                .headers_mut()
                .insert(lambda_http::http::header::LOCATION, value);
        }
        Ok(response)
    }

    async fn release(&self, id: &str, reservation_id: &str) -> Result<Response<Body>, ApiError> {
        if !is_id(id) || !is_id(reservation_id) {
            return Err(ApiError::NotFound);
        }
        self.store.release(id, reservation_id).await?;
        tracing::info!(product_id = %id, %reservation_id, "reservation released");
        Ok(no_content())
    }

    async fn find(&self, id: &str) -> Result<Product, ApiError> {
        if !is_id(id) {
            return Err(ApiError::NotFound);
        }
        self.store.get(id).await?.ok_or(ApiError::NotFound)
    }
}
