//! Routing and handlers: the HTTP face of the user service.
//!
//! Paths are the function's own (`/users…`); the edge proxy strips its `/api` prefix. Every
//! handler returns `Result<Response, ApiError>` and [`App::handle`] turns errors into responses,
//! so there is exactly one place where failures become HTTP.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use service_core::body::parse_json;
use service_core::http::{json, no_content, with_version, Precondition};
use service_core::paging::{parse_limit, CursorCodec};
use service_core::{telemetry, ApiError};

use crate::domain::{CreateUser, UpdateUser, User};
use crate::store::UserStore;

/// How often an update without `If-Match` re-reads and re-applies when another writer got in
/// first; with `If-Match` a lost race is reported as 412 instead.
const UPDATE_ATTEMPTS: usize = 5;
const CURSOR_SCOPE: &str = "users";

pub struct App {
    store: Arc<dyn UserStore>,
    cursors: CursorCodec,
}

impl App {
    pub fn new(store: Arc<dyn UserStore>, cursors: CursorCodec) -> Self {
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
            ["users"] => match method {
                Method::GET => self.list(&request).await,
                Method::POST => self.create(&request).await,
                _ => Err(ApiError::MethodNotAllowed {
                    allow: "GET, HEAD, POST",
                }),
            },
            ["users", id] => {
                let id = *id;
                match method {
                    Method::GET => self.get(id).await,
                    Method::PATCH => self.update(id, &request).await,
                    Method::DELETE => self.delete(id, &request).await,
                    _ => Err(ApiError::MethodNotAllowed {
                        allow: "GET, HEAD, PATCH, DELETE",
                    }),
                }
            }
            _ => Err(ApiError::NotFound),
        }
    }

    async fn create(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: CreateUser = parse_json(request.headers(), request.body())?;
        let new = input.validate()?;
        let now = Utc::now();
        let user = User {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            email: new.email,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.store.create(&user).await?;
        tracing::info!(user_id = %user.id, "user created");
        let location = format!("/users/{}", user.id);
        Ok(with_version(
            json(StatusCode::CREATED, &user),
            user.version,
            Some(&location),
        ))
    }

    async fn get(&self, id: &str) -> Result<Response<Body>, ApiError> {
        let user = self.find(id).await?;
        Ok(with_version(
            json(StatusCode::OK, &user),
            user.version,
            None,
        ))
    }

    async fn list(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let query = request.query_string_parameters();
        for name in ["limit", "cursor"] {
            if query.all(name).is_some_and(|values| values.len() > 1) {
                return Err(ApiError::invalid_query(name, "must be given at most once"));
            }
        }
        let limit = parse_limit(query.first("limit"))?;
        let after = query
            .first("cursor")
            .map(|cursor| self.cursors.decode(CURSOR_SCOPE, cursor))
            .transpose()?;
        let page = self.store.list(limit, after.as_deref()).await?;
        Ok(json(
            StatusCode::OK,
            &page.into_body(&self.cursors, CURSOR_SCOPE),
        ))
    }

    async fn update(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: UpdateUser = parse_json(request.headers(), request.body())?;
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
                self.store.delete(&current).await
            })
            .await?;
        Ok(no_content())
    }

    async fn find(&self, id: &str) -> Result<User, ApiError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ApiError::NotFound);
        }
        self.store.get(id).await?.ok_or(ApiError::NotFound)
    }
}
