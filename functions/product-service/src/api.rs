//! Routing and handlers: the HTTP face of the product service.
//!
//! Paths are the function's own (`/products…`); the edge proxy strips its `/api` prefix. Errors
//! become responses in exactly one place, [`App::handle`].

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use service_core::body::parse_json;
use service_core::http::{json, no_content, update, versioned, write_current, Target};
use service_core::paging::{CursorCodec, Listing};
use service_core::validate::{self, is_id};
use service_core::{ApiError, Handler};

use crate::domain::{
    validate_category, CreateProduct, CreateReservation, Product, ProductError, Reservation,
    UpdateProduct,
};
use crate::store::ProductStore;

pub struct App {
    store: Arc<dyn ProductStore>,
    cursors: CursorCodec,
    /// Seconds a shared cache may serve a product read without asking (0: not shared).
    max_age: u32,
}

/// How long product reads stay fresh in a shared cache unless `PRODUCT_CACHE_MAX_AGE` says.
pub const DEFAULT_MAX_AGE: u32 = 5;

impl App {
    pub fn new(store: Arc<dyn ProductStore>, cursors: CursorCodec) -> Self {
        App {
            store,
            cursors,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Product reads shareable for `seconds` (0: every response private).
    pub fn with_max_age(mut self, seconds: u32) -> Self {
        self.max_age = seconds;
        self
    }

    async fn dispatch(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let target = Target::of(&request);
        let method = target.method.clone();
        match target.segments().as_slice() {
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
            id: validate::new_id(),
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
        Ok(versioned(StatusCode::CREATED, &product, Some(&location)))
    }

    async fn get(&self, id: &str) -> Result<Response<Body>, ApiError> {
        Ok(versioned(StatusCode::OK, &self.find(id).await?, None))
    }

    async fn list(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let query = request.query_string_parameters();
        let listing = Listing::from_query(&query, &["category"])?;
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
        let after = listing.after(&self.cursors, &scope)?;
        let page = self
            .store
            .list(listing.limit, after.as_deref(), category.as_deref())
            .await?;
        Ok(json(StatusCode::OK, &page.into_body(&self.cursors, &scope)))
    }

    async fn update(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: UpdateProduct = parse_json(request.headers(), request.body())?;
        let replace = |current: Product, next: Product| async move {
            self.store.replace(&current, &next).await?;
            Ok(next)
        };
        update(
            request.headers(),
            &input.validate()?,
            || self.find(id),
            replace,
        )
        .await
    }

    async fn delete(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        write_current(
            request.headers(),
            || self.find(id),
            |current| async move {
                if current.open_reservations > 0 {
                    return Err(ProductError::HasOpenReservations.into());
                }
                Ok(self.store.delete(&current).await?)
            },
        )
        .await?;
        Ok(no_content())
    }

    async fn reserve(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateReservation = parse_json(request.headers(), request.body())?;
        let quantity = input.validate()?;
        if !is_id(id) {
            return Err(ApiError::NotFound);
        }
        let reservation_id = validate::new_id();
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
        validate::find(id, || self.store.get(id)).await
    }
}

#[async_trait::async_trait]
impl Handler for App {
    async fn route(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let read = request.method() == Method::GET;
        let mut response = self.dispatch(request).await?;
        // Products read the same for every caller: the edge cache may share them. A write
        // through the edge proxy purges what it holds of the product and the lists.
        if read && response.status() == StatusCode::OK && self.max_age > 0 {
            service_core::http::shared_read(&mut response, self.max_age);
        }
        Ok(response)
    }
}
