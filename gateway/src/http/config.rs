//! `[http]`: where the API and the nurse-station page listen, and the
//! bearer tokens: who may read, acknowledge and silence.

use std::net::SocketAddr;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate};

use crate::secret::SecretSource;

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Address to listen on; loopback by default.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<HttpsConfig>,
    /// Who may write (and read, with `reads_need_token`). Without tokens
    /// every write is refused (401).
    #[serde(default)]
    pub tokens: Vec<HttpToken>,
    /// Reads (the API, the event stream, `/metrics`) need a token of any
    /// role too. Off by default for a gateway on loopback; turn it on when
    /// the port is reachable from a ward network. The page's own files,
    /// `/healthz` and `/readyz` stay open (they carry no patient data).
    #[serde(default)]
    pub reads_need_token: bool,
    /// `ward` (the nurse station) or `home` (a patient's hub: large type and
    /// what to do, in plain words, for each open alert).
    #[serde(default)]
    pub layout: Layout,
    /// `Host` headers accepted besides the listen address and the loopback
    /// names with its port (a web page cannot then reach the gateway through
    /// a name it controls: DNS rebinding). Empty with an unspecified listen
    /// address (`0.0.0.0`): any host.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl HttpConfig {
    /// The `Host` headers to accept; `None`: any.
    pub fn hosts(&self) -> Option<Vec<String>> {
        if self.listen.ip().is_unspecified() && self.allowed_hosts.is_empty() {
            return None;
        }
        let port = self.listen.port();
        let ip = match self.listen {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        // The listen address and the loopback names, with the port or
        // without (a client may leave it out): names no web page controls.
        let mut hosts = Vec::new();
        for name in [ip.as_str(), "localhost", "127.0.0.1", "[::1]"] {
            hosts.push(format!("{name}:{port}"));
            hosts.push(name.to_owned());
        }
        hosts.dedup();
        hosts.extend(self.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
        Some(hosts)
    }
}

/// `tls = { cert = "/etc/wardgate/https.pem", key = { file = "/etc/wardgate/https.key" } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// PEM: the server's certificate, then the chain up to (not including)
    /// the root.
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), a secret: `{ file = "…" }`
    /// (private to the gateway's user) or `{ env = "VAR" }`.
    pub key: SecretSource,
}

/// `{ name = "station-1", token = { env = "VAR" }, role = "nurse" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpToken {
    /// Recorded as who acknowledged (with the optional `by` of a request).
    pub name: String,
    /// `{ env = "VAR" }` or `{ file = "path" }`, never inline.
    pub token: SecretSource,
    /// What the token may do (default `nurse`).
    #[serde(default)]
    pub role: Role,
}

/// Which page the gateway serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    #[default]
    Ward,
    Home,
}

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the API, the event stream and `/metrics` (a corridor display,
    /// a Prometheus scraper).
    Viewer,
    /// Also acknowledge alerts and silence one subject (a nurses' station).
    #[default]
    Nurse,
    /// Also silence a rule for every subject of the ward: the ward-wide
    /// "alarm off" that IEC 60601-1-8 keeps from the ordinary operator
    /// (the charge nurse's or the ward administrator's token).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Nurse => "nurse",
            Role::Admin => "admin",
        }
    }
}

pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Validate for HttpConfig {
    /// Problems relative to the `[http]` table.
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = |key: &'static str| {
                [
                    PathSeg::from("tokens"),
                    PathSeg::from(i),
                    PathSeg::from(key),
                ]
            };
            if t.name.is_empty()
                || t.name.chars().count() > 64
                || t.name.chars().any(char::is_control)
            {
                issues.push(ConfigIssue::new(
                    at("name"),
                    "token name must be 1 to 64 printable characters",
                ));
            }
            if self.tokens[..i].iter().any(|o| o.name == t.name) {
                issues.push(ConfigIssue::new(
                    at("name"),
                    format!("duplicate token name `{}`", t.name),
                ));
            }
        }
        issues
    }
}
