//! The `edge-proxy` command line as an operator uses it: `check` refuses a bad config with exit
//! code 2 and the field's name, and the `registry` commands put, show and remove an instance in
//! the local stack's registry table.
//!
//! Runs the built binary (`make test` builds it); the registry part needs the local stack's
//! environment (`AWS_ENDPOINT_URL`, `REGISTRY_TABLE`).

use std::path::PathBuf;
use std::process::{Command, Output};

fn edge_proxy(args: &[&str]) -> Output {
    let binary = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debug/edge-proxy"
    ));
    assert!(
        binary.exists(),
        "{} is not built: run `make test`",
        binary.display()
    );
    Command::new(binary)
        .args(["--log-format", "text"])
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_passes_a_good_config_and_names_the_field_of_a_bad_one() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let good = format!("{root}/edge-proxy/config/dev.toml");
    let output = edge_proxy(&["check", "--config", &good]);
    assert!(output.status.success(), "{}", text(&output));

    let bad = std::env::temp_dir().join(format!("edge-check-{}.toml", std::process::id()));
    let config = std::fs::read_to_string(&good).unwrap().replace(
        "service = \"user-service\"",
        "service = \"no-such-service\"",
    );
    std::fs::write(&bad, config).unwrap();
    let output = edge_proxy(&["check", "--config", bad.to_str().unwrap()]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("routes[0].service: no service named 'no-such-service'"),
        "{}",
        text(&output)
    );
}

#[test]
fn registry_register_list_deregister() {
    let table = std::env::var("REGISTRY_TABLE")
        .unwrap_or_else(|_| panic!("REGISTRY_TABLE must be set (local stack only)"));
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| u.starts_with("http://127.0.0.1")),
        "registry commands only run against the local endpoint here"
    );
    let service = format!("cli-test-{}", uuid::Uuid::new_v4().simple());
    let url = "http://localhost:65000";
    let registered = edge_proxy(&[
        "registry",
        "register",
        "--table",
        &table,
        "--service",
        &service,
        "--url",
        url,
        "--weight",
        "3",
        "--ttl-seconds",
        "120",
    ]);
    assert!(registered.status.success(), "{}", text(&registered));
    let listed = edge_proxy(&["registry", "list", "--table", &table]);
    assert!(listed.status.success(), "{}", text(&listed));
    let line = text(&listed)
        .lines()
        .find(|l| l.starts_with(&service))
        .unwrap_or_else(|| panic!("{service} not listed: {}", text(&listed)))
        .to_string();
    assert!(line.contains(url) && line.contains(" 3 "), "{line}");

    let removed = edge_proxy(&[
        "registry",
        "deregister",
        "--table",
        &table,
        "--service",
        &service,
        "--url",
        url,
    ]);
    assert!(removed.status.success(), "{}", text(&removed));
    let listed = edge_proxy(&["registry", "list", "--table", &table]);
    assert!(!text(&listed).contains(&service), "{}", text(&listed));

    // A URL that is not one is refused, and nothing is written.
    let refused = edge_proxy(&[
        "registry",
        "register",
        "--table",
        &table,
        "--service",
        &service,
        "--url",
        "ftp://x",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("scheme must be http or https"),
        "{}",
        text(&refused)
    );
    let listed = edge_proxy(&["registry", "list", "--table", &table]);
    assert!(!text(&listed).contains(&service), "{}", text(&listed));
}
