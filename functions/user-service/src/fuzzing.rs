//! Fuzz entry points for the user bodies (see `service_core::fuzzing`): any bytes are either
//! refused with a 4xx or validate into values that are already normalised.

use service_core::fuzzing::json_body;

use crate::domain::{email_key, validate_email, validate_name, CreateUser, UpdateUser};

fn assert_normalised(name: Option<&str>, email: Option<&str>) {
    if let Some(name) = name {
        assert_eq!(validate_name(name).ok().as_deref(), Some(name));
    }
    if let Some(email) = email {
        assert_eq!(validate_email(email).ok().as_deref(), Some(email));
        assert_eq!(email_key(email), email_key(&email.to_uppercase()));
    }
}

/// `POST /users` bodies.
pub fn create(data: &[u8]) {
    if let Some(user) = json_body(data, CreateUser::validate) {
        assert_normalised(Some(&user.name), Some(&user.email));
    }
}

/// `PATCH /users/{id}` bodies.
pub fn update(data: &[u8]) {
    if let Some(patch) = json_body(data, UpdateUser::validate) {
        assert!(patch.name.is_some() || patch.email.is_some());
        assert_normalised(patch.name.as_deref(), patch.email.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use service_core::fuzzing::replay;

    #[test]
    fn fuzz_seeds_hold() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        assert!(replay(&seeds.join("user_create"), super::create) > 0);
        assert!(replay(&seeds.join("user_update"), super::update) > 0);
    }
}
