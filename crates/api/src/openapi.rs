//! The OpenAPI document, generated from the handlers' annotations.

use crate::routes::{audit, billing, directory, moves, platform};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "tenantry", description = "Licence ledger of tenantry, shaped like Microsoft Graph's licensing resources. \
Errors are application/problem+json with a stable `code`. Every POST honours Idempotency-Key."),
    paths(
        platform::create_tenant, platform::list_tenants, platform::get_tenant, platform::list_skus, platform::add_sku,
        platform::create_token, platform::create_application, platform::list_applications,
        platform::rotate_application_secret, platform::delete_application, platform::revoke_token, platform::advance_clock,
        billing::create, billing::list_all, billing::get, billing::patch, billing::cancel, billing::reactivate,
        billing::extend_trial, billing::transfer, billing::subscribed_skus,
        directory::create, directory::list_all, directory::get, directory::patch, directory::delete,
        directory::assign_license, directory::license_details,
        audit::list_all,
        moves::create_profile, moves::list_profiles, moves::update_profile, moves::create, moves::list_all, moves::get, moves::plan,
        moves::run, moves::pause, moves::resume, moves::cancel, moves::report, moves::confirm_step,
    ),
    modifiers(&BearerAuth, &ProblemResponses),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error answers every operation can give, added once here rather than on each handler:
/// they come from the shared layers (extractors, authentication, middleware), not from the
/// handler's own logic. A response a handler already documents keeps its description and gets
/// the problem body.
struct ProblemResponses;

/// (status, description, when it applies).
const COMMON_ERRORS: &[(&str, &str, Applies)] = &[
    (
        "400",
        "malformed request: path id, query, header or JSON syntax",
        Applies::Always,
    ),
    (
        "401",
        "no token, or a token that is not valid",
        Applies::Always,
    ),
    (
        "403",
        "the principal's role does not allow this",
        Applies::Always,
    ),
    (
        "404",
        "no such resource (or one of another tenant)",
        Applies::Always,
    ),
    (
        "409",
        "an earlier request with this Idempotency-Key is still running",
        Applies::Post,
    ),
    (
        "412",
        "If-Match names a version that is not the current one",
        Applies::Patch,
    ),
    ("413", "the body is larger than 1 MiB", Applies::WithBody),
    (
        "415",
        "the body is not sent as application/json",
        Applies::WithBody,
    ),
    (
        "422",
        "well-formed input that breaks a rule, or an Idempotency-Key reused with another request",
        Applies::Always,
    ),
    (
        "429",
        "too many failed authentications from this address; see Retry-After",
        Applies::Always,
    ),
    (
        "500",
        "the server failed; the cause is in its log",
        Applies::Always,
    ),
    (
        "502",
        "a tenant reached through Microsoft Graph could not be read (TenantUnreachable: Graph's reason in the detail)",
        Applies::Moves,
    ),
    (
        "503",
        "the server runs without tenant moves",
        Applies::Moves,
    ),
];

#[derive(Clone, Copy, PartialEq)]
enum Applies {
    Always,
    Post,
    Patch,
    WithBody,
    Moves,
}

fn problem_content() -> utoipa::openapi::Content {
    utoipa::openapi::ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
        .build()
}

fn problem_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let field = |t: Type, description: &str| {
        ObjectBuilder::new()
            .schema_type(t)
            .description(Some(description))
    };
    ObjectBuilder::new()
        .property("type", field(Type::String, "urn:tenantry:problem:<code>"))
        .property("title", field(Type::String, "the status's reason phrase"))
        .property("status", field(Type::Integer, "the HTTP status"))
        .property(
            "detail",
            field(Type::String, "what went wrong, for a person"),
        )
        .property("code", field(Type::String, "stable, for programs"))
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .required("code")
        .description(Some("RFC 9457 problem details (application/problem+json)"))
        .into()
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .insert("Problem".into(), RefOr::T(problem_schema()));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let moves = path.starts_with("/v1/moves") || path.starts_with("/v1/connectionProfiles");
            let operations = [
                (&mut item.get, Applies::Always),
                (&mut item.post, Applies::Post),
                (&mut item.patch, Applies::Patch),
                (&mut item.delete, Applies::Always),
                (&mut item.put, Applies::Always),
            ];
            for (operation, kind) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                let with_body = operation.request_body.is_some();
                for (status, description, applies) in COMMON_ERRORS {
                    let wanted = match applies {
                        Applies::Always => true,
                        Applies::WithBody => with_body,
                        Applies::Moves => moves,
                        other => *other == kind,
                    };
                    if !wanted {
                        continue;
                    }
                    match operation.responses.responses.get_mut(*status) {
                        Some(RefOr::T(response)) => {
                            response
                                .content
                                .insert("application/problem+json".into(), problem_content());
                        }
                        Some(RefOr::Ref(_)) => {}
                        None => {
                            operation.responses.responses.insert(
                                (*status).to_string(),
                                RefOr::T(
                                    ResponseBuilder::new()
                                        .description(*description)
                                        .content("application/problem+json", problem_content())
                                        .build(),
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
