//! `[http]`: where the API and the nurse-station page listen, and the
//! bearer tokens allowed to write (acknowledge, silence).

use std::net::SocketAddr;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg};

use crate::config::SecretSource;

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Address to listen on; loopback by default (put a TLS proxy in front
    /// to serve a ward network).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Who may write. Without tokens every write is refused (401).
    #[serde(default)]
    pub tokens: Vec<HttpToken>,
}

/// `{ name = "station-1", token = { env = "VAR" } }`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpToken {
    /// Recorded as who acknowledged (with the optional `by` of a request).
    pub name: String,
    /// `{ env = "VAR" }` or `{ file = "path" }`, never inline.
    pub token: SecretSource,
}

pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl HttpConfig {
    /// Problems relative to the `[http]` table.
    pub fn issues(&self) -> Vec<ConfigIssue> {
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
