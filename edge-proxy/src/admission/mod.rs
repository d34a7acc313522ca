//! Admission: who may send this request, and how fast. Authentication (API keys, JWTs) and
//! scopes in [`auth`], the keys RS256/ES256 tokens are checked with in [`jwks`], and the
//! bounded-memory GCRA limiter in [`ratelimit`], limits shared by every replica through Redis
//! in [`global`]. Depends on `config` and `ops` only.

pub mod auth;
pub mod global;
pub mod jwks;
pub mod ratelimit;
