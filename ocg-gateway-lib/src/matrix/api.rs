//! The few Matrix client-server API calls (v3) the channel makes.
//!
//! The access token travels in the `Authorization` header only; URLs hold
//! room ids and sync tokens, which are not secret. Path segments are
//! percent-encoded (room ids carry `!` and `:`).

use std::sync::RwLock;
use std::time::Duration;

use ocg_core::config::Secret;
use reqwest::{Method, Url};
use serde_json::{Value, json};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFailure {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// The homeserver answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// The Matrix error code (`M_FORBIDDEN`, `M_UNKNOWN_TOKEN`, …).
        errcode: String,
        /// The homeserver's explanation.
        error: String,
        /// How long to wait before retrying (429).
        retry_after: Option<Duration>,
    },
}

impl ApiFailure {
    /// Worth retrying: no answer, rate limited, or a server error.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ApiFailure::Transport(_) => true,
            ApiFailure::Refused { status, .. } => *status == 429 || *status >= 500,
        }
    }

    /// The access token is not (or no longer) valid.
    pub(crate) fn is_unknown_token(&self) -> bool {
        matches!(self, ApiFailure::Refused { status: 401, .. })
    }

    /// The homeserver's `retry_after_ms`, capped at an hour.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiFailure::Refused {
                retry_after: Some(wait),
                ..
            } => Some((*wait).min(Duration::from_secs(3600))),
            _ => None,
        }
    }
}

impl crate::reconnect::Transient for ApiFailure {
    fn transient(&self) -> bool {
        self.is_transient()
    }
    fn wait(&self) -> Option<Duration> {
        self.retry_after()
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Transport(message) => write!(f, "no answer from the homeserver: {message}"),
            ApiFailure::Refused {
                status,
                errcode,
                error,
                ..
            } => write!(f, "the homeserver answered {status} {errcode}: {error}"),
        }
    }
}

/// A login: what `POST /login` returned.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub user_id: String,
    pub device_id: String,
    pub access_token: Secret,
}

/// A client of one homeserver.
#[derive(Debug)]
pub(crate) struct MatrixApi {
    http: reqwest::Client,
    base: Url,
    token: RwLock<Option<Secret>>,
}

impl MatrixApi {
    /// A client of the homeserver at `base` (`https://matrix.example.org`).
    pub(crate) fn new(base: &str) -> Result<Self, String> {
        let base = Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("ocg-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(MatrixApi {
            http,
            base,
            token: RwLock::new(None),
        })
    }

    /// Use `token` for the calls from now on.
    pub(crate) fn set_token(&self, token: Option<Secret>) {
        *self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token;
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["_matrix", "client", "v3"])
                .extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ApiFailure> {
        let mut request = self.http.request(method, url).timeout(timeout);
        let token = self
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiFailure::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiFailure::Transport(e.without_url().to_string()))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        Err(ApiFailure::Refused {
            status,
            errcode: text("errcode").unwrap_or_else(|| "M_UNKNOWN".into()),
            error: text("error").unwrap_or_else(|| {
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
            }),
            retry_after: value
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        })
    }

    /// `POST /login` with a password, keeping `device_id` when given so a
    /// new login does not leave one more device on the account.
    pub(crate) async fn login(
        &self,
        user_id: &str,
        password: &Secret,
        device_id: Option<&str>,
    ) -> Result<Login, ApiFailure> {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password.expose(),
            "initial_device_display_name": "OCG",
        });
        if let Some(device) = device_id {
            body["device_id"] = json!(device);
        }
        let answer = self
            .call(
                Method::POST,
                self.url(&["login"]),
                Some(&body),
                Duration::from_secs(30),
            )
            .await?;
        let field = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ApiFailure::Transport(format!("the login answer has no {key}")))
        };
        Ok(Login {
            user_id: field("user_id")?,
            device_id: field("device_id")?,
            access_token: Secret::new(field("access_token")?),
        })
    }

    /// `GET /account/whoami`: the user the token belongs to.
    pub(crate) async fn whoami(&self) -> Result<String, ApiFailure> {
        let answer = self
            .call(
                Method::GET,
                self.url(&["account", "whoami"]),
                None,
                Duration::from_secs(30),
            )
            .await?;
        answer
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiFailure::Transport("the whoami answer has no user_id".into()))
    }

    /// `GET /sync`, held by the homeserver up to `wait` when nothing is new.
    pub(crate) async fn sync(
        &self,
        since: Option<&str>,
        filter: &str,
        wait: Duration,
    ) -> Result<Value, ApiFailure> {
        let mut url = self.url(&["sync"]);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("filter", filter)
                .append_pair("timeout", &wait.as_millis().to_string());
            if let Some(since) = since {
                query.append_pair("since", since);
            }
        }
        self.call(Method::GET, url, None, wait + Duration::from_secs(30))
            .await
    }

    /// `PUT /rooms/{room}/send/m.room.message/{txn}`: the event id. The same
    /// `txn` sent again (a retry) is not sent twice.
    pub(crate) async fn send(
        &self,
        room: &str,
        txn: &str,
        content: &Value,
    ) -> Result<String, ApiFailure> {
        let url = self.url(&["rooms", room, "send", "m.room.message", txn]);
        let answer = self
            .call(Method::PUT, url, Some(content), Duration::from_secs(30))
            .await?;
        Ok(answer
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// `PUT /rooms/{room}/typing/{user}`.
    pub(crate) async fn typing(&self, room: &str, user: &str, on: bool) -> Result<(), ApiFailure> {
        let body = if on {
            json!({"typing": true, "timeout": 10_000})
        } else {
            json!({"typing": false})
        };
        let url = self.url(&["rooms", room, "typing", user]);
        self.call(Method::PUT, url, Some(&body), Duration::from_secs(15))
            .await
            .map(drop)
    }

    /// `POST /rooms/{room}/join` (accepts an invite).
    pub(crate) async fn join(&self, room: &str) -> Result<(), ApiFailure> {
        let url = self.url(&["rooms", room, "join"]);
        self.call(Method::POST, url, Some(&json!({})), Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// `POST /rooms/{room}/leave` (also rejects an invite).
    pub(crate) async fn leave(&self, room: &str) -> Result<(), ApiFailure> {
        let url = self.url(&["rooms", room, "leave"]);
        self.call(Method::POST, url, Some(&json!({})), Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// How many members have joined `room`.
    pub(crate) async fn joined_members(&self, room: &str) -> Result<usize, ApiFailure> {
        let url = self.url(&["rooms", room, "joined_members"]);
        let answer = self
            .call(Method::GET, url, None, Duration::from_secs(30))
            .await?;
        Ok(answer
            .get("joined")
            .and_then(Value::as_object)
            .map_or(0, serde_json::Map::len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_encoded_as_one_path_segment() {
        let api = MatrixApi::new("https://matrix.example.org/prefix/").unwrap();
        let url = api.url(&["rooms", "!abc:example.org", "send", "m.room.message", "t/1"]);
        assert_eq!(
            url.as_str(),
            "https://matrix.example.org/prefix/_matrix/client/v3/rooms/!abc:example.org/send/m.room.message/t%2F1"
        );
    }

    #[test]
    fn failures_say_whether_to_retry() {
        let refused = |status, retry_after| ApiFailure::Refused {
            status,
            errcode: "M_X".into(),
            error: "x".into(),
            retry_after,
        };
        assert!(refused(429, Some(Duration::from_millis(1500))).is_transient());
        assert_eq!(
            refused(429, Some(Duration::from_millis(1500))).retry_after(),
            Some(Duration::from_millis(1500))
        );
        assert!(refused(502, None).is_transient());
        assert!(!refused(403, None).is_transient());
        assert!(refused(401, None).is_unknown_token());
        assert!(ApiFailure::Transport("reset".into()).is_transient());
    }
}
