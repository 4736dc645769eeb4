//! [`ProvetError`]: why a Provet call failed, sorted by what the caller should do about it.

use std::time::Duration;

/// Why a Provet call failed, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvetError {
    /// 404: the object does not exist, or (for external SMS) it was already marked and is gone.
    #[error("Provet answered 404 Not Found: the object does not exist or was already marked")]
    NotFound,
    /// 429: Provet's per-endpoint rate limit. `retry_after` comes from the `Retry-After` header.
    #[error("Provet rate limit reached (HTTP 429){}", match retry_after {
        Some(d) => format!(", retry after {} s", d.as_secs()),
        None => String::new(),
    })]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, network trouble or a timeout: try again later.
    #[error("temporary failure talking to Provet: {0}")]
    Transient(String),
    /// Any other 4xx: repeating the same request will not help.
    #[error("Provet refused the request with HTTP {status}: {body_excerpt}")]
    Permanent { status: u16, body_excerpt: String },
    /// The token endpoint refused us (client id or secret wrong, token URL wrong), or the API
    /// refused a freshly issued token.
    #[error("Provet authentication failed: {0}")]
    Auth(String),
    /// The answer was not what the API promises (bad JSON, missing field); names the field.
    #[error("unexpected answer from Provet: {0}")]
    BadResponse(String),
}

impl ProvetError {
    /// True when the same request may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProvetError::RateLimited { .. } | ProvetError::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rate_limits_and_transient_errors_are_retryable() {
        assert!(ProvetError::RateLimited { retry_after: None }.is_retryable());
        assert!(ProvetError::Transient("x".into()).is_retryable());
        assert!(!ProvetError::NotFound.is_retryable());
        assert!(!ProvetError::Permanent { status: 400, body_excerpt: String::new() }.is_retryable());
        assert!(!ProvetError::Auth("x".into()).is_retryable());
        assert!(!ProvetError::BadResponse("x".into()).is_retryable());
    }
}
