//! The dashboard and the alert rules in `edge-proxy/monitoring/` use only metrics the proxy
//! exports: a renamed metric would otherwise leave a panel or an alert silently empty.
//! (`make test` also runs `promtool check rules`, `promtool test rules` and
//! `promtool check metrics` on a live `/metrics`.)

use edge_proxy::ops::metrics::Metrics;

/// Every `edge_…` / `process_…` identifier in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = text[i..].starts_with("edge_") || text[i..].starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| i + n);
            names.push(text[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let metrics = Metrics::new();
    let exported = metrics.names();
    for file in ["alerts.yml", "alerts_test.yml", "grafana-dashboard.json"] {
        let path = format!("{}/monitoring/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} uses no metric");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which the proxy does not export"
            );
        }
    }
    // The check can fail: a name that is not exported is caught.
    assert!(!exported.contains(&"edge_requests".to_string()));
    assert!(exported.contains(&"edge_request_duration_seconds_bucket".to_string()));
    assert!(exported.contains(&"process_resident_memory_bytes".to_string()));
}
