//! Token endpoint errors (RFC 6749 §5.2).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenEndpointError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// 401; `basic` says whether the client used the Authorization header, in which
    /// case the response carries `WWW-Authenticate: Basic`.
    #[error("{description}")]
    InvalidClient { description: &'static str, basic: bool },
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("{0}")]
    UnauthorizedClient(&'static str),
    #[error("{0}")]
    UnsupportedGrantType(&'static str),
    #[error("{0}")]
    InvalidScope(&'static str),
    /// RFC 7009 §2.2.1.
    #[error("{0}")]
    UnsupportedTokenType(&'static str),
}

impl TokenEndpointError {
    pub fn invalid_client(description: &'static str, basic: bool) -> Self {
        Self::InvalidClient { description, basic }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
        }
    }

    /// RFC 6749 §5.2: 400, or 401 for client authentication failures.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient { .. } => 401,
            _ => 400,
        }
    }
}
