//! A function refuses to start without what the template gives it on AWS, and says which
//! variable is missing or wrong, instead of serving with a guessable cursor key. Runs the built
//! binaries (`make test` builds them); no stack needed.

use std::path::PathBuf;
use std::process::Command;

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug")).join(name);
    assert!(
        path.exists(),
        "{} is not built: run `make test`",
        path.display()
    );
    path
}

fn start(name: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(binary(name));
    command.env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_function_without_its_cursor_secret_refuses_to_start() {
    for (name, table) in [
        ("user-service", "USERS_TABLE"),
        ("product-service", "PRODUCTS_TABLE"),
    ] {
        let (ok, said) = start(name, &[(table, "SomeTable")]);
        assert!(!ok, "{name} started without CURSOR_SECRET");
        assert!(said.contains("CURSOR_SECRET"), "{name} said: {said}");

        let (ok, said) = start(name, &[(table, "SomeTable"), ("CURSOR_SECRET", "short")]);
        assert!(!ok, "{name} started with a short CURSOR_SECRET");
        assert!(
            said.contains("CURSOR_SECRET must be at least 32 bytes"),
            "{name} said: {said}"
        );

        let (ok, said) = start(name, &[("CURSOR_SECRET", &"k".repeat(40))]);
        assert!(!ok, "{name} started without its table");
        assert!(said.contains(table), "{name} said: {said}");
    }
}

#[test]
fn the_product_service_and_its_sweeper_refuse_to_start_without_the_reservations_table() {
    let secret = "k".repeat(40);
    let (ok, said) = start(
        "product-service",
        &[("PRODUCTS_TABLE", "P"), ("CURSOR_SECRET", &secret)],
    );
    assert!(!ok, "product-service started without RESERVATIONS_TABLE");
    assert!(
        said.contains("environment variable RESERVATIONS_TABLE must be set"),
        "said: {said}"
    );
    let (ok, said) = start(
        "product-service",
        &[
            ("PRODUCTS_TABLE", "P"),
            ("CURSOR_SECRET", &secret),
            ("RESERVATIONS_TABLE", "R"),
            ("RESERVATION_MAX_HOLD_SECONDS", "0"),
        ],
    );
    assert!(!ok, "product-service started with a hold of 0 s");
    assert!(
        said.contains("RESERVATION_MAX_HOLD_SECONDS"),
        "said: {said}"
    );
    for (env, missing) in [
        (&[("PRODUCTS_TABLE", "P")][..], "RESERVATIONS_TABLE"),
        (&[("RESERVATIONS_TABLE", "R")][..], "PRODUCTS_TABLE"),
    ] {
        let (ok, said) = start("reservation-sweeper", env);
        assert!(!ok, "the sweeper started without {missing}");
        assert!(
            said.contains(&format!("environment variable {missing} must be set")),
            "said: {said}"
        );
    }
}
