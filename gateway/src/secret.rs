//! Secrets (tokens, passwords) come from the environment or a file, never from
//! the configuration file itself, and never show up in logs or `Debug` output.
//! A leaf: it imports nothing of the gateway, so the sections that hold a
//! secret (`http`, `mqtt`, the sinks) need not import `config`.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Where a secret comes from: `{ env = "WARDGATE_MQTT_PASSWORD" }` or
/// `{ file = "/run/secrets/mqtt" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A resolved secret. Its `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that hands it to a peer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set (or not valid UTF-8)")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret from {0} is empty")]
    Empty(String),
    #[error(
        "secret file {path} can be read by its group or others (mode {mode:o}); make it private: chmod 600 {path}"
    )]
    Exposed { path: PathBuf, mode: u32 },
}

impl SecretSource {
    /// Reads the secret. A file's trailing newline is not part of the secret.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let (value, from) = match self {
            SecretSource::Env(var) => (
                std::env::var(var).map_err(|_| SecretError::MissingEnv(var.clone()))?,
                format!("${var}"),
            ),
            SecretSource::File(path) => {
                use std::os::unix::fs::PermissionsExt as _;
                let file_err = |source| SecretError::File {
                    path: path.clone(),
                    source,
                };
                let mode = std::fs::metadata(path)
                    .map_err(file_err)?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(SecretError::Exposed {
                        path: path.clone(),
                        mode: mode & 0o777,
                    });
                }
                (
                    std::fs::read_to_string(path).map_err(file_err)?,
                    path.display().to_string(),
                )
            }
        };
        let value = value.trim_end_matches(['\r', '\n']).to_owned();
        if value.is_empty() {
            return Err(SecretError::Empty(from));
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn file_secret_is_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Readable by others: refused, with what to do.
        let err = SecretSource::File(path.clone()).resolve().unwrap_err();
        assert!(
            err.to_string().ends_with(&format!(
                "can be read by its group or others (mode 644); make it private: chmod 600 {}",
                path.display()
            )),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = SecretSource::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cr3t-token");
        assert!(!format!("{secret:?} {secret}").contains("s3cr3t"));
    }

    #[test]
    fn missing_sources_are_named() {
        let err = SecretSource::Env("WARDGATE_TEST_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("WARDGATE_TEST_SURELY_UNSET_VAR"));
        let err = SecretSource::File("/nonexistent/wardgate/token".into())
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/wardgate/token"));
    }
}
