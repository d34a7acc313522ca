//! Routing and handlers: the HTTP face of the product service.
//!
//! Paths are the function's own (`/products…`, `/reservations`); the edge proxy strips its
//! `/api` prefix. Errors become responses in exactly one place, [`App::handle`].
//!
//! Reservations belong to the caller who made them (the identity the proxy forwards): anyone
//! else, unless they have the [`ADMIN_SCOPE`], gets a 404 for them, as if they did not exist.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use service_core::body::parse_json;
use service_core::http::{json, no_content, versioned, Caller, Precondition, Target};
use service_core::paging::{CursorCodec, Listing};
use service_core::validate::{self, is_id};
use service_core::{ApiError, Handler};

use crate::domain::{
    validate_category, CreateProduct, CreateReservation, Ending, Product, Reservation,
    UpdateProduct, ADMIN_SCOPE, DEFAULT_MAX_HOLD_SECONDS,
};
use crate::store::ProductStore;

/// Where the time comes from (the system clock, or a test's).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct App {
    store: Arc<dyn ProductStore>,
    cursors: CursorCodec,
    /// Seconds a shared cache may serve a product read without asking (0: not shared).
    max_age: u32,
    /// The longest hold a reservation may ask for.
    max_hold_seconds: u32,
    clock: Clock,
}

/// How long product reads stay fresh in a shared cache unless `PRODUCT_CACHE_MAX_AGE` says.
pub const DEFAULT_MAX_AGE: u32 = 5;

impl App {
    pub fn new(store: Arc<dyn ProductStore>, cursors: CursorCodec) -> Self {
        App {
            store,
            cursors,
            max_age: DEFAULT_MAX_AGE,
            max_hold_seconds: DEFAULT_MAX_HOLD_SECONDS,
            clock: Arc::new(Utc::now),
        }
    }

    /// Product reads shareable for `seconds` (0: every response private).
    pub fn with_max_age(mut self, seconds: u32) -> Self {
        self.max_age = seconds;
        self
    }

    /// Reservations may hold their stock for at most `seconds`.
    pub fn with_max_hold(mut self, seconds: u32) -> Self {
        self.max_hold_seconds = seconds;
        self
    }

    /// Time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    async fn dispatch(
        &self,
        target: &Target,
        request: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let method = &target.method;
        match target.segments().as_slice() {
            ["products"] => match *method {
                Method::GET => self.list(request).await,
                Method::POST => self.create(request).await,
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, POST",
                }),
            },
            ["products", id] => match *method {
                Method::GET => self.get(id).await,
                Method::PATCH => self.update(id, request).await,
                Method::DELETE => self.delete(id, request).await,
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, PATCH, DELETE",
                }),
            },
            ["products", id, "reservations"] => match *method {
                Method::POST => self.reserve(id, request).await,
                _ => Err(ApiError::MethodNotAllowed { allow: "POST" }),
            },
            ["products", id, "reservations", reservation_id] => match *method {
                Method::GET => self.reservation(id, reservation_id, request).await,
                Method::DELETE => {
                    self.end(id, reservation_id, request, Ending::Release)
                        .await?;
                    Ok(no_content())
                }
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, DELETE",
                }),
            },
            ["products", id, "reservations", reservation_id, "confirm"] => match *method {
                Method::POST => {
                    let confirmed = self
                        .end(id, reservation_id, request, Ending::Confirm)
                        .await?;
                    Ok(json(StatusCode::OK, &confirmed))
                }
                _ => Err(ApiError::MethodNotAllowed { allow: "POST" }),
            },
            ["reservations"] => match *method {
                Method::GET => self.my_reservations(request).await,
                _ => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
            },
            _ => Err(ApiError::NotFound),
        }
    }

    async fn create(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateProduct = parse_json(request.headers(), request.body())?;
        let new = input.validate()?;
        let now = self.now();
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

    /// The version `If-Match` pins, if any; a tag that names no version of ours can only
    /// fail (412).
    fn pinned_version(request: &Request) -> Result<Option<u64>, ApiError> {
        match Precondition::from_headers(request.headers()) {
            Precondition::Any => Ok(None),
            Precondition::Version(version) => Ok(Some(version)),
            Precondition::Unsatisfiable => Err(ApiError::VersionMismatch),
        }
    }

    /// `PATCH`: only the fields the body names change, in one conditional write; without
    /// `If-Match` nothing a concurrent reservation does can make it fail.
    async fn update(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: UpdateProduct = parse_json(request.headers(), request.body())?;
        let patch = input.validate()?;
        if !is_id(id) {
            return Err(ApiError::NotFound);
        }
        let expected = match Self::pinned_version(request) {
            Ok(expected) => expected,
            // Unless the product does not exist (404).
            Err(unsatisfiable) => {
                self.find(id).await?;
                return Err(unsatisfiable);
            }
        };
        let updated = self.store.patch(id, &patch, expected, self.now()).await?;
        Ok(versioned(StatusCode::OK, &updated, None))
    }

    async fn delete(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let current = self.find(id).await?;
        let expected = Self::pinned_version(request)?;
        self.store.delete(&current, expected).await?;
        tracing::info!(product_id = %id, "product deleted");
        Ok(no_content())
    }

    async fn reserve(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateReservation = parse_json(request.headers(), request.body())?;
        let new = input.validate(self.max_hold_seconds)?;
        if !is_id(id) {
            return Err(ApiError::NotFound);
        }
        let caller = Caller::of(request.headers())?;
        let now = self.now();
        let reservation = Reservation {
            reservation_id: validate::new_id(),
            product_id: id.to_string(),
            owner: caller.id,
            quantity: new.quantity,
            status: crate::domain::ReservationStatus::Open,
            created_at: now,
            hold_until: now + chrono::Duration::seconds(i64::from(new.hold_seconds)),
            ended_at: None,
        };
        self.store.reserve(&reservation).await?;
        tracing::info!(
            product_id = %id,
            reservation_id = %reservation.reservation_id,
            owner = %reservation.owner,
            quantity = new.quantity,
            hold_seconds = new.hold_seconds,
            "stock reserved"
        );
        let location = format!("/products/{id}/reservations/{}", reservation.reservation_id);
        let mut response = json(StatusCode::CREATED, &reservation);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    }

    /// The reservation `reservation_id` of product `id`, if the caller may see it: its owner,
    /// or a caller with the admin scope. Anyone else gets the same 404 as for none at all.
    async fn visible_reservation(
        &self,
        id: &str,
        reservation_id: &str,
        request: &Request,
    ) -> Result<Reservation, ApiError> {
        let caller = Caller::of(request.headers())?;
        if !is_id(id) || !is_id(reservation_id) {
            return Err(ApiError::NotFound);
        }
        let reservation = self
            .store
            .reservation(reservation_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let visible = reservation.product_id == id
            && (reservation.owner == caller.id || caller.has_scope(ADMIN_SCOPE));
        if visible {
            Ok(reservation)
        } else {
            Err(ApiError::NotFound)
        }
    }

    async fn reservation(
        &self,
        id: &str,
        reservation_id: &str,
        request: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let reservation = self
            .visible_reservation(id, reservation_id, request)
            .await?;
        Ok(json(StatusCode::OK, &reservation.at(self.now())))
    }

    /// Release (the stock goes back) or confirm (a sale) an open reservation, by its owner.
    async fn end(
        &self,
        id: &str,
        reservation_id: &str,
        request: &Request,
        ending: Ending,
    ) -> Result<Reservation, ApiError> {
        let reservation = self
            .visible_reservation(id, reservation_id, request)
            .await?;
        let ended = self.store.end(&reservation, ending, self.now()).await?;
        tracing::info!(
            product_id = %id,
            %reservation_id,
            status = %ended.status,
            "reservation ended"
        );
        Ok(ended)
    }

    /// `GET /reservations`: the caller's open reservations, soonest hold end first.
    /// `?owner=` names another owner, for callers with the admin scope only.
    async fn my_reservations(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let caller = Caller::of(request.headers())?;
        let query = request.query_string_parameters();
        let listing = Listing::from_query(&query, &["owner"])?;
        let owner = match query.first("owner") {
            None | Some("me") => caller.id.clone(),
            Some(other) if caller.has_scope(ADMIN_SCOPE) && !other.trim().is_empty() => {
                other.to_string()
            }
            Some(_) => {
                return Err(ApiError::invalid_query(
                    "owner",
                    format!("must be `me` (another owner needs the {ADMIN_SCOPE} scope)"),
                ))
            }
        };
        let scope = format!("reservations|owner={owner}");
        let after = listing.after(&self.cursors, &scope)?;
        let page = self
            .store
            .open_reservations_of(&owner, self.now(), listing.limit, after.as_deref())
            .await?;
        Ok(json(StatusCode::OK, &page.into_body(&self.cursors, &scope)))
    }

    async fn find(&self, id: &str) -> Result<Product, ApiError> {
        validate::find(id, || self.store.get(id)).await
    }
}

#[async_trait::async_trait]
impl Handler for App {
    async fn route(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let target = Target::of(&request);
        // Products read the same for every caller: the edge cache may share them (a write
        // through the edge proxy purges what it holds of the product and the lists).
        // Reservations are the caller's own and stay private.
        let shared = target.method == Method::GET
            && matches!(target.segments().as_slice(), ["products"] | ["products", _]);
        let mut response = self.dispatch(&target, &request).await?;
        if shared && response.status() == StatusCode::OK && self.max_age > 0 {
            service_core::http::shared_read(&mut response, self.max_age);
        }
        Ok(response)
    }
}
