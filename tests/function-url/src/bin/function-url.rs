//! `function-url`: local stand-ins for Lambda function URLs with `AuthType: AWS_IAM`, one per
//! `--front`, for the stack in AWS's shape. It accepts requests signed (SigV4, service
//! `lambda`, `--region`) with the credentials in the standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and nothing else.
//!
//! ```text
//! function-url --region us-east-1 \
//!     --front localhost:9200=http://127.0.0.1:9100/lambda-url/user-service \
//!     --front localhost:9201=http://127.0.0.1:9100/lambda-url/product-service
//! ```
//! listens on every address `localhost` resolves to, port 9200 and 9201.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use clap::Parser;
use function_url::front::FunctionUrl;
use function_url::verify::Expected;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

#[derive(Parser)]
#[command(about = "Local stand-ins for IAM-protected Lambda function URLs")]
struct Cli {
    /// The region requests must be signed for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// HOST:PORT=UPSTREAM: the front's host name and port, and the function's base URL under
    /// cargo lambda watch.
    #[arg(long = "front", required = true)]
    fronts: Vec<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
}

struct Front {
    host: String,
    listen: Vec<SocketAddr>,
    upstream: SocketAddr,
    function_path: String,
}

fn parse_front(spec: &str) -> Result<Front, String> {
    let (host, upstream) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec}: expected HOST:PORT=UPSTREAM"))?;
    let listen: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .collect();
    let upstream = upstream
        .strip_prefix("http://")
        .ok_or_else(|| format!("{upstream}: expected http://HOST:PORT/PATH"))?;
    let (authority, path) = upstream.split_once('/').unwrap_or((upstream, ""));
    let upstream = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    Ok(Front {
        host: host.to_string(),
        listen,
        upstream,
        function_path: format!("/{}", path.trim_end_matches('/')),
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_ansi(false).init();
    let cli = Cli::parse();
    let fronts = match cli
        .fronts
        .iter()
        .map(|s| parse_front(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(fronts) => fronts,
        Err(error) => {
            eprintln!("function-url: {error}");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    for front in fronts {
        let app = FunctionUrl {
            expected: Expected {
                access_key: cli.access_key.clone(),
                secret_key: cli.secret_key.clone(),
                session_token: cli.session_token.clone(),
                region: cli.region.clone(),
                host: front.host.clone(),
            },
            upstream: front.upstream,
            function_path: front.function_path,
        };
        let mut service = pingora::proxy::http_proxy_service(&server.configuration, app);
        for address in &front.listen {
            service.add_tcp(&address.to_string());
        }
        tracing::info!(host = %front.host, listen = ?front.listen, upstream = %front.upstream, "function URL");
        server.add_service(service);
    }
    server.run_forever()
}
