//! `POST /{tenantId}/oauth2/v2.0/token`: the OAuth2 client-credentials grant as Entra ID answers
//! it (RFC 6749 §4.4): a form body in, `{"token_type","expires_in","access_token"}` out, and
//! errors as `{"error","error_description"}` — 400 for a bad request, 401 for a client that
//! does not authenticate. Failed client authentications count towards the per-address limit.

use crate::auth::client_address;
use crate::graph::odata::decode_pairs;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tenantry_ledger::TenantId;
use uuid::Uuid;

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description.into()})),
    )
        .into_response();
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A refused request, as RFC 6749 §5.2 names it.
struct Refused {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        oauth_error(self.status, self.error, self.description)
    }
}

fn invalid_request(description: &str) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_request",
        description: description.into(),
    }
}

/// The parameters of a client-credentials request.
struct Grant {
    client_id: Uuid,
    client_secret: String,
}

fn parse_grant(parts: &Parts, body: &[u8]) -> Result<Grant, Refused> {
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(invalid_request(
            "send the request as a form: Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid_request("the body is not UTF-8"))?;
    let pairs = decode_pairs(text).map_err(|r| invalid_request(&r.message))?;
    let field = |name: &str| -> Result<Option<&str>, Refused> {
        let mut values = pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(invalid_request(&format!("{name} is given more than once")));
        }
        Ok(first)
    };
    match field("grant_type")? {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(Refused {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                description: "only grant_type=client_credentials is supported".into(),
            })
        }
        None => return Err(invalid_request("grant_type is required")),
    }
    let scope = field("scope")?.ok_or_else(|| invalid_request("scope is required"))?;
    if scope.split(' ').count() != 1 || !scope.ends_with("/.default") {
        return Err(Refused {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            description: "the scope of a client-credentials request is one resource followed by \
                          /.default, e.g. https://graph.microsoft.com/.default"
                .into(),
        });
    }
    let client_id = field("client_id")?.ok_or_else(|| invalid_request("client_id is required"))?;
    let client_id = Uuid::parse_str(client_id)
        .map_err(|_| invalid_request("client_id must be an application (client) id, a GUID"))?;
    let client_secret = field("client_secret")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_request("client_secret is required"))?;
    Ok(Grant {
        client_id,
        client_secret: client_secret.to_string(),
    })
}

pub async fn issue(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let client = client_address(&parts);
    if let Some(wait) = app.auth_failures.wait(client) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            format!("too many failed sign-ins from this address; try again in {seconds} s"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return invalid_request("the tenant in the path must be a tenant id (a GUID)")
            .into_response();
    };
    let grant = match parse_grant(&parts, &body) {
        Ok(grant) => grant,
        Err(refused) => return refused.into_response(),
    };
    let lifetime = app.graph.token_lifetime_secs();
    let issued = app
        .ledger
        .issue_app_token(
            tenant,
            grant.client_id,
            &grant.client_secret,
            lifetime,
            app.clock.now(),
        )
        .await;
    match issued {
        Ok(Some(token)) => {
            let mut response = Json(json!({
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token.access_token,
            }))
            .into_response();
            no_store(&mut response);
            response
        }
        Ok(None) => {
            app.auth_failures.failed(client);
            // Neither the secret nor whether the client exists is told or logged.
            tracing::warn!(%client, "client authentication failed");
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "the client id and secret are not an application of this tenant",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "token issue failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not issue a token; it has been logged",
            )
        }
    }
}

/// `GET /{tenantId}/v2.0/.well-known/openid-configuration`: the OpenID Connect discovery document
/// MSAL (and so azure-identity and the Graph SDKs) reads to find the token endpoint of an
/// authority. Only the client-credentials grant is served; the authorization endpoint exists
/// because MSAL requires it to be named, and refuses every request.
pub async fn openid_configuration(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return invalid_request("the tenant in the path must be a tenant id (a GUID)")
            .into_response();
    };
    let base = format!("{}/{}", app.graph.origin(&headers), tenant.0);
    Json(json!({
        "issuer": format!("{base}/v2.0"),
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "scopes_supported": [".default"],
        "tenant_region_scope": null,
    }))
    .into_response()
}

/// `/{tenantId}/oauth2/v2.0/authorize`: named by the discovery document, never served (there is
/// no interactive sign-in; applications use client credentials).
pub async fn authorize() -> Response {
    Refused {
        status: StatusCode::BAD_REQUEST,
        error: "unsupported_response_type",
        description: "tenantry issues tokens only through the client-credentials grant \
                      (POST /{tenantId}/oauth2/v2.0/token)"
            .into(),
    }
    .into_response()
}
