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
        platform::create_token, platform::advance_clock,
        billing::create, billing::list_all, billing::get, billing::patch, billing::cancel, billing::reactivate,
        billing::extend_trial, billing::transfer, billing::subscribed_skus,
        directory::create, directory::list_all, directory::get, directory::patch, directory::delete,
        directory::assign_license, directory::license_details,
        audit::list_all,
        moves::create_profile, moves::list_profiles, moves::create, moves::list_all, moves::get, moves::plan,
        moves::run, moves::pause, moves::resume, moves::cancel, moves::report,
    ),
    modifiers(&BearerAuth),
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

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
