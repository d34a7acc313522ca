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
use service_core::http::{json, no_content, update, versioned, write_current, Target};
use service_core::paging::{CursorCodec, Listing};
use service_core::{validate, ApiError, Handler};

use crate::domain::{CreateUser, UpdateUser, User};
use crate::store::UserStore;

const CURSOR_SCOPE: &str = "users";

pub struct App {
    store: Arc<dyn UserStore>,
    cursors: CursorCodec,
}

impl App {
    pub fn new(store: Arc<dyn UserStore>, cursors: CursorCodec) -> Self {
        App { store, cursors }
    }

    async fn dispatch(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let target = Target::of(&request);
        let method = target.method.clone();
        match target.segments().as_slice() {
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
            id: validate::new_id(),
            name: new.name,
            email: new.email,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        self.store.create(&user).await?;
        tracing::info!(user_id = %user.id, "user created");
        let location = format!("/users/{}", user.id);
        Ok(versioned(StatusCode::CREATED, &user, Some(&location)))
    }

    async fn get(&self, id: &str) -> Result<Response<Body>, ApiError> {
        Ok(versioned(StatusCode::OK, &self.find(id).await?, None))
    }

    async fn list(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let listing = Listing::from_query(&request.query_string_parameters(), &[])?;
        let after = listing.after(&self.cursors, CURSOR_SCOPE)?;
        let page = self.store.list(listing.limit, after.as_deref()).await?;
        Ok(json(
            StatusCode::OK,
            &page.into_body(&self.cursors, CURSOR_SCOPE),
        ))
    }

    async fn update(&self, id: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let input: UpdateUser = parse_json(request.headers(), request.body())?;
        let replace = |current: User, next: User| async move {
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
            |current| async move { Ok(self.store.delete(&current).await?) },
        )
        .await?;
        Ok(no_content())
    }

    async fn find(&self, id: &str) -> Result<User, ApiError> {
        validate::find(id, || self.store.get(id)).await
    }
}

#[async_trait::async_trait]
impl Handler for App {
    async fn route(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.dispatch(request).await
    }
}
