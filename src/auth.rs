//! Credentials: secrets read from environment variables or files named in config (never
//! from the YAML itself), and access tokens — a static token, or one minted from an
//! OAuth 2.0 refresh token through the `oauth2` crate and minted again when the API
//! says it expired.
//!
//! Secrets live in `SecretString`, so `Debug` prints `[REDACTED]`, and no error here
//! quotes one.

use std::path::{Path, PathBuf};

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RefreshToken, TokenResponse, TokenUrl};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{file}: `{key}`: environment variable {var} is not set")]
    MissingEnv { file: PathBuf, key: String, var: String },
    #[error("{file}: `{key}`: cannot read {path}: {message}")]
    File { file: PathBuf, key: String, path: PathBuf, message: String },
    #[error("{file}: `{key}`: the secret is empty")]
    Empty { file: PathBuf, key: String },
    #[error("OAuth token refresh failed: {0}")]
    Refresh(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where a secret comes from: `<key>_env` or `<key>_file` in a connector file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret. `file` and `key` name where the config asked for it.
    pub fn read(&self, file: &Path, key: &str) -> Result<SecretString, AuthError> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| AuthError::MissingEnv {
                file: file.to_path_buf(),
                key: format!("{key}_env"),
                var: var.clone(),
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(|e| AuthError::File {
                file: file.to_path_buf(),
                key: format!("{key}_file"),
                path: path.clone(),
                message: e.kind().to_string(),
            })?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(AuthError::Empty { file: file.to_path_buf(), key: key.to_owned() });
        }
        Ok(SecretString::from(value))
    }
}

/// Picks `<key>_env` or `<key>_file`; exactly one must be given.
pub fn secret_source(
    key: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
    base: &Path,
) -> Result<SecretSource, String> {
    match (env, file) {
        (Some(var), None) => Ok(SecretSource::Env(var.clone())),
        (None, Some(path)) => Ok(SecretSource::File(base.join(path))),
        (Some(_), Some(_)) => Err(format!("give `{key}_env` or `{key}_file`, not both")),
        (None, None) => Err(format!("missing `{key}_env` (or `{key}_file`)")),
    }
}

/// OAuth 2.0 refresh-token settings, secrets already read.
pub struct RefreshSettings {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// How requests authenticate.
pub enum Auth {
    /// A long-lived token (HubSpot private app, Common Room API token).
    Token(SecretString),
    /// Access tokens minted from a refresh token, cached until the API rejects one.
    Refresh { settings: RefreshSettings, current: Mutex<Option<SecretString>> },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token([REDACTED])"),
            Auth::Refresh { settings, .. } => write!(f, "Auth::Refresh {{ token_url: {}, client_id: {} }}", settings.token_url, settings.client_id),
        }
    }
}

impl Auth {
    pub fn refresh(settings: RefreshSettings) -> Auth {
        Auth::Refresh { settings, current: Mutex::new(None) }
    }

    pub fn refreshable(&self) -> bool {
        matches!(self, Auth::Refresh { .. })
    }

    /// The bearer token to send now, minting one when none is cached.
    pub async fn bearer(&self, http: &reqwest::Client) -> Result<SecretString, AuthError> {
        match self {
            Auth::Token(t) => Ok(t.clone()),
            Auth::Refresh { settings, current } => {
                let mut current = current.lock().await;
                if let Some(t) = current.as_ref() {
                    return Ok(t.clone());
                }
                let token = mint(settings, http).await?;
                *current = Some(token.clone());
                Ok(token)
            }
        }
    }

    /// Drops the cached access token after the API rejected it.
    pub async fn invalidate(&self) {
        if let Auth::Refresh { current, .. } = self {
            *current.lock().await = None;
        }
    }
}

async fn mint(s: &RefreshSettings, http: &reqwest::Client) -> Result<SecretString, AuthError> {
    let token_url = TokenUrl::new(s.token_url.clone()).map_err(|e| AuthError::Invalid(format!("token URL: {e}")))?;
    // HubSpot wants client id and secret in the form body, not in Basic auth.
    // <https://developers.hubspot.com/docs/api/oauth/tokens>
    let client = BasicClient::new(ClientId::new(s.client_id.clone()))
        .set_client_secret(ClientSecret::new(s.client_secret.expose_secret().to_owned()))
        .set_token_uri(token_url)
        .set_auth_type(AuthType::RequestBody);
    let response = client
        .exchange_refresh_token(&RefreshToken::new(s.refresh_token.expose_secret().to_owned()))
        .request_async(http)
        .await
        .map_err(|e| AuthError::Refresh(describe_token_error(&e)))?;
    Ok(SecretString::from(response.access_token().secret().to_owned()))
}

/// The token endpoint's answer, without anything secret (oauth2's errors can quote the
/// request).
fn describe_token_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            let mut out = r.error().to_string();
            if let Some(d) = r.error_description() {
                out.push_str(": ");
                out.push_str(d);
            }
            out
        }
        oauth2::RequestTokenError::Request(_) => "the token endpoint could not be reached".into(),
        oauth2::RequestTokenError::Parse(_, _) => "the token endpoint sent an unreadable answer".into(),
        oauth2::RequestTokenError::Other(m) => m.clone(),
    }
}
