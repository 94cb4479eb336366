//! Request extractors that turn every kind of bad input into a specific problem response.

use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::str::FromStr;
use tenantry_store::PageRequest;

/// JSON body whose rejections are problem responses: 400 for malformed JSON, 415 for a wrong
/// content type, 413 for an oversized body, 422 for well-formed JSON of the wrong shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            ApiError::unprocessable("ValidationFailed", e.body_text())
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("MalformedJson", e.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
            )
        }
        other => ApiError::bad_request("MalformedBody", other.body_text()),
    }
}

/// Parses an identifier taken from the path.
pub fn parse_id<T: FromStr>(raw: &str, what: &str) -> ApiResult<T> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "MalformedId",
            format!("'{raw}' is not a valid {what} id (a GUID)"),
        )
    })
}

/// Graph-style paging: `$top` (1..=1000, default 100) and the opaque `$skiptoken` of a nextLink.
#[derive(Debug, Clone, Copy)]
pub struct Paging(pub PageRequest);

#[derive(Deserialize)]
struct PagingQuery {
    #[serde(rename = "$top")]
    top: Option<String>,
    #[serde(rename = "$skiptoken")]
    skiptoken: Option<String>,
}

pub const MAX_PAGE: u32 = 1000;

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(q) = Query::<PagingQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e: QueryRejection| ApiError::bad_request("MalformedQuery", e.body_text()))?;
        let top = match q.top {
            None => 100,
            Some(t) => match t.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        "InvalidPageSize",
                        format!("$top must be a number from 1 to {MAX_PAGE}"),
                    ))
                }
            },
        };
        let after = match q.skiptoken {
            None => None,
            Some(token) => Some(token.parse::<i64>().map_err(|_| {
                ApiError::bad_request(
                    "InvalidSkipToken",
                    "$skiptoken must come from an @odata.nextLink",
                )
            })?),
        };
        Ok(Paging(PageRequest { top, after }))
    }
}

/// The version an `If-Match` header asks for (`W/"7"` or `"7"`); `*` or no header means any.
/// A well-formed entity tag this API never issues (e.g. `"abc"`) cannot match any version, so it
/// asks for [`IfMatch::NEVER`] and the change answers 412 (RFC 9110 §13.1.1); only a value that is
/// not an entity tag at all is a 400.
pub struct IfMatch(pub Option<u64>);

impl IfMatch {
    /// A version no resource reaches.
    pub const NEVER: u64 = u64::MAX;
}

/// The opaque part of an entity tag (`W/"x"` or `"x"`), if `text` is one (RFC 9110 §8.8.3).
fn entity_tag(text: &str) -> Option<&str> {
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
    opaque
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        .then_some(opaque)
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let opaque = entity_tag(text).ok_or_else(|| {
            ApiError::bad_request(
                "MalformedIfMatch",
                "If-Match must be an entity tag (W/\"7\"), as this API returns in ETag",
            )
        })?;
        Ok(IfMatch(Some(opaque.parse::<u64>().unwrap_or(Self::NEVER))))
    }
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}
