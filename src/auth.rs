//! Credentials: secrets read from environment variables or files named in config (never
//! from the YAML itself), and access tokens — a static token, or one minted through an
//! OAuth 2.0 grant (the `oauth2` crate) and minted again ahead of its expiry, as the
//! token answer's `expires_in` (or, where the server names none, the assumed lifetime)
//! says. A 401 is not taken as the sign to refresh (HubSpot's usage guidelines); it
//! leads to one new token as a last resort only.
//!
//! Secrets live in `SecretString`, so `Debug` prints `[REDACTED]`, and no error here
//! quotes one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    #[error("OAuth token request failed: {0}")]
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
        crate::redaction::register(&value);
        Ok(SecretString::from(value))
    }
}

/// Why a `*_env` value is refused; the value is not echoed, as it is most likely the
/// secret itself.
pub fn env_name_message(key: &str) -> String {
    format!("`{key}` must name an environment variable (letters, digits and `_`), not hold the secret itself")
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
pub fn is_env_name(var: &str) -> bool {
    !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Picks `<key>_env` or `<key>_file`; exactly one must be given.
pub fn secret_source(
    key: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
    base: &Path,
) -> Result<SecretSource, String> {
    match (env, file) {
        // Not echoed: a value that is no variable name is most likely the secret itself.
        (Some(var), None) if !is_env_name(var) => Err(env_name_message(&format!("{key}_env"))),
        (Some(var), None) => Ok(SecretSource::Env(var.clone())),
        (None, Some(path)) => Ok(SecretSource::File(base.join(path))),
        (Some(_), Some(_)) => Err(format!("give `{key}_env` or `{key}_file`, not both")),
        (None, None) => Err(format!("missing `{key}_env` (or `{key}_file`)")),
    }
}

/// How access tokens are minted.
pub enum Grant {
    /// OAuth 2.0 refresh-token grant (HubSpot and Salesforce apps).
    Refresh { token_url: String, client_id: String, client_secret: SecretString, refresh_token: SecretString },
    /// Client-credentials grant (Salesforce: against the org's My Domain URL).
    ClientCredentials { token_url: String, client_id: String, client_secret: SecretString },
    /// JWT bearer grant (RFC 7523): a freshly signed assertion every time; Salesforce
    /// returns no refresh token for it.
    JwtBearer { token_url: String, client_id: String, username: String, audience: String, key: jsonwebtoken::EncodingKey },
}

impl Grant {
    fn describe(&self) -> String {
        match self {
            Grant::Refresh { token_url, client_id, .. } => format!("refresh token at {token_url} for {client_id}"),
            Grant::ClientCredentials { token_url, client_id, .. } => format!("client credentials at {token_url} for {client_id}"),
            Grant::JwtBearer { token_url, client_id, username, .. } => format!("JWT bearer at {token_url} for {client_id} as {username}"),
        }
    }
}

/// A minted access token, and the instance it is for (Salesforce's `instance_url`).
#[derive(Clone)]
pub struct Session {
    pub token: SecretString,
    pub instance_url: Option<String>,
}

/// How requests authenticate.
pub enum Auth {
    /// A long-lived token (HubSpot private app, Common Room API token).
    Token(SecretString),
    /// Access tokens minted by a grant, cached until shortly before they expire.
    Minted { grant: Grant, assumed_lifetime: Duration, current: Mutex<Option<Minted>> },
}

/// A cached access token and when to mint the next one.
pub struct Minted {
    session: Session,
    renew_at: Instant,
}

/// How long a token is taken to live when its answer names no `expires_in`
/// (Salesforce's never do): 15 minutes, the shortest session timeout Salesforce allows.
pub const ASSUMED_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// When to mint the next token: 5 minutes before expiry, or a quarter of the lifetime
/// before it for tokens that live less than 20 minutes.
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime - (lifetime / 4).min(Duration::from_secs(5 * 60))
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token([REDACTED])"),
            Auth::Minted { grant, .. } => write!(f, "Auth::Minted({})", grant.describe()),
        }
    }
}

impl Auth {
    pub fn minted(grant: Grant) -> Auth {
        Auth::Minted { grant, assumed_lifetime: ASSUMED_LIFETIME, current: Mutex::new(None) }
    }

    /// How long tokens whose answer names no `expires_in` are taken to live (a
    /// Salesforce org's session timeout).
    pub fn assuming_lifetime(self, lifetime: Duration) -> Auth {
        match self {
            Auth::Minted { grant, current, .. } => Auth::Minted { grant, assumed_lifetime: lifetime, current },
            token => token,
        }
    }

    pub fn refreshable(&self) -> bool {
        matches!(self, Auth::Minted { .. })
    }

    /// The bearer token to send now, minting one when none is cached.
    pub async fn bearer(&self, http: &reqwest::Client) -> Result<SecretString, AuthError> {
        Ok(self.session(http).await?.token)
    }

    /// The current session (minting one when none is cached or the cached one is near
    /// its expiry).
    pub async fn session(&self, http: &reqwest::Client) -> Result<Session, AuthError> {
        match self {
            Auth::Token(t) => Ok(Session { token: t.clone(), instance_url: None }),
            Auth::Minted { grant, assumed_lifetime, current } => {
                let mut current = current.lock().await;
                if let Some(m) = current.as_ref().filter(|m| Instant::now() < m.renew_at) {
                    return Ok(m.session.clone());
                }
                let minted_at = Instant::now();
                let (session, expires_in) = mint(grant, http).await?;
                let lifetime = expires_in.unwrap_or(*assumed_lifetime);
                *current = Some(Minted { session: session.clone(), renew_at: minted_at + renew_after(lifetime) });
                Ok(session)
            }
        }
    }

    /// Drops the cached access token after the API rejected it (the last resort: a
    /// token is normally renewed before it expires).
    pub async fn invalidate(&self) {
        if let Auth::Minted { current, .. } = self {
            *current.lock().await = None;
        }
    }
}

/// Salesforce adds `instance_url` to its token answers; other servers leave it out.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct InstanceField {
    #[serde(default)]
    instance_url: Option<String>,
}

impl oauth2::ExtraTokenFields for InstanceField {}

type TokenAnswer = oauth2::StandardTokenResponse<InstanceField, oauth2::basic::BasicTokenType>;

type OAuthClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    TokenAnswer,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth_client(token_url: &str, client_id: &str, secret: &SecretString) -> Result<OAuthClient, AuthError> {
    let token_url = TokenUrl::new(token_url.to_owned()).map_err(|e| AuthError::Invalid(format!("token URL: {e}")))?;
    // HubSpot and Salesforce both take client id and secret in the form body.
    // <https://developers.hubspot.com/docs/api/oauth/tokens>
    Ok(oauth2::Client::new(ClientId::new(client_id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()))
        .set_token_uri(token_url)
        .set_auth_type(AuthType::RequestBody))
}

/// The session of a token answer, and its `expires_in`.
fn session_of(answer: TokenAnswer) -> (Session, Option<Duration>) {
    crate::redaction::register(answer.access_token().secret());
    let session = Session {
        token: SecretString::from(answer.access_token().secret().to_owned()),
        instance_url: answer.extra_fields().instance_url.clone(),
    };
    (session, answer.expires_in())
}

async fn mint(grant: &Grant, http: &reqwest::Client) -> Result<(Session, Option<Duration>), AuthError> {
    match grant {
        Grant::Refresh { token_url, client_id, client_secret, refresh_token } => {
            let answer = oauth_client(token_url, client_id, client_secret)?
                .exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned()))
                .request_async(http)
                .await
                .map_err(|e| AuthError::Refresh(describe_token_error(&e)))?;
            Ok(session_of(answer))
        }
        Grant::ClientCredentials { token_url, client_id, client_secret } => {
            let answer = oauth_client(token_url, client_id, client_secret)?
                .exchange_client_credentials()
                .request_async(http)
                .await
                .map_err(|e| AuthError::Refresh(describe_token_error(&e)))?;
            Ok(session_of(answer))
        }
        Grant::JwtBearer { token_url, client_id, username, audience, key } => {
            jwt_bearer(http, token_url, client_id, username, audience, key).await
        }
    }
}

/// RFC 7523 JWT bearer grant. The `oauth2` crate has no request type for this grant, so
/// the form POST is made here; the answer has the standard token shape.
/// <https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm>
async fn jwt_bearer(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    username: &str,
    audience: &str,
    key: &jsonwebtoken::EncodingKey,
) -> Result<(Session, Option<Duration>), AuthError> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        sub: &'a str,
        aud: &'a str,
        exp: i64,
    }
    // Salesforce accepts assertions valid for at most three minutes.
    let claims = Claims { iss: client_id, sub: username, aud: audience, exp: chrono::Utc::now().timestamp() + 170 };
    let assertion = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, key)
        .map_err(|e| AuthError::Invalid(format!("cannot sign the JWT assertion: {e}")))?;
    crate::redaction::register(&assertion);
    let response = http
        .post(token_url)
        .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
        .send()
        .await
        .map_err(|_| AuthError::Refresh("the token endpoint could not be reached".into()))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|_| AuthError::Refresh("the token endpoint sent an unreadable answer".into()))?;
    match body.get("access_token").and_then(|t| t.as_str()) {
        Some(token) if status == 200 => Ok((
            Session {
                token: {
                    crate::redaction::register(token);
                    SecretString::from(token.to_owned())
                },
                instance_url: body.get("instance_url").and_then(|u| u.as_str()).map(str::to_owned),
            },
            body.get("expires_in").and_then(|e| e.as_u64()).map(Duration::from_secs),
        )),
        _ => Err(AuthError::Refresh(
            crate::redaction::redact(&format!(
                "{}{} (HTTP {status})",
                body.get("error").and_then(|e| e.as_str()).unwrap_or("token request refused"),
                body.get("error_description").and_then(|e| e.as_str()).map(|d| format!(": {d}")).unwrap_or_default(),
            ))
            .into_owned(),
        )),
    }
}

/// Reads an RSA private key (PEM) for the JWT bearer grant.
pub fn read_private_key(file: &Path, key: &str, path: &Path) -> Result<jsonwebtoken::EncodingKey, AuthError> {
    let bytes = std::fs::read(path).map_err(|e| AuthError::File {
        file: file.to_path_buf(),
        key: key.to_owned(),
        path: path.to_path_buf(),
        message: e.kind().to_string(),
    })?;
    crate::redaction::register(&String::from_utf8_lossy(&bytes));
    jsonwebtoken::EncodingKey::from_rsa_pem(&bytes).map_err(|_| AuthError::File {
        file: file.to_path_buf(),
        key: key.to_owned(),
        path: path.to_path_buf(),
        message: "not an RSA private key in PEM form".into(),
    })
}
/// The token endpoint's answer, without anything secret (oauth2's errors can quote the
/// request, and a server's description can echo the secret it refused).
fn describe_token_error<RE: std::error::Error + 'static>(
    e: &oauth2::RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> String {
    let text = match e {
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
    };
    crate::redaction::redact(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_five_minutes_early_or_a_quarter_of_a_short_life_early() {
        assert_eq!(renew_after(Duration::from_secs(1800)), Duration::from_secs(1500));
        assert_eq!(renew_after(Duration::from_secs(7200)), Duration::from_secs(6900));
        assert_eq!(renew_after(ASSUMED_LIFETIME), Duration::from_secs(675));
        assert_eq!(renew_after(Duration::from_secs(60)), Duration::from_secs(45));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }
}
