//! The OpenAPI document of the `/v1.0` surface, served at `/openapi/graph.json` beside the `/v1`
//! document (`/openapi.json`). Written out here rather than derived from the handlers: they
//! answer with Graph's shapes built as JSON values (`$select` drops properties), and Graph's
//! error envelope comes from a middleware. `scripts/api-contract` runs Schemathesis against it
//! with an application's token, so a shape or status that drifts from this text fails the tests.
//!
//! Like Microsoft's own OpenAPI description of Graph, entity properties are not marked
//! required: `$select` returns only those named.

use serde_json::{json, Value};

/// The statuses any `/v1.0` operation may answer with Graph's error envelope.
const ERRORS: &[(&str, &str)] = &[
    ("400", "a malformed or refused request: the path, a query option, the body, or a rule of the ledger (no free licence, a taken userPrincipalName)"),
    ("401", "no token, or a token that is not valid"),
    ("403", "the token's role does not allow this, or the operator token (it has no tenant)"),
    ("404", "no such resource in the token's tenant"),
    ("429", "this token made too many requests; see Retry-After"),
    ("500", "the server failed; the cause is in its log"),
];

/// Statuses only an operation with a body may answer.
const BODY_ERRORS: &[(&str, &str)] = &[
    ("413", "the body is larger than 1 MiB"),
    ("415", "the body is not sent as application/json"),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    let read = |summary: &str, params: Vec<Value>, ok: Value| json!({"summary": summary, "parameters": params, "responses": {"200": ok}});
    let select =
        |names: &[&str]| query_param("$select", "comma-separated properties to return", names);
    let collection_of = |schema: &str| {
        ok(json!({
            "type": "object",
            "required": ["value"],
            "properties": {
                "@odata.context": {"type": "string"},
                "@odata.nextLink": {"type": "string", "format": "uri"},
                "@odata.count": {"type": "integer", "minimum": 0},
                "value": {"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}")}}
            }
        }))
    };
    let one = |schema: &str| ok(json!({"$ref": format!("#/components/schemas/{schema}")}));
    let paging = || {
        vec![
            json!({"name": "$top", "in": "query", "description": "entries per page, 1 to 999",
                   "schema": {"type": "integer", "minimum": 1, "maximum": 999}}),
            json!({"name": "$skiptoken", "in": "query", "description": "from an @odata.nextLink",
                   "schema": {"type": "string"}}),
        ]
    };
    let id = |what: &str| {
        json!({"name": "id", "in": "path", "required": true, "description": what,
               "schema": {"type": "string"}})
    };

    paths.insert(
        "/v1.0/subscribedSkus".into(),
        json!({"get": read("The tenant's subscribed SKUs", vec![select(SUBSCRIBED_SKU)], collection_of("subscribedSku"))}),
    );
    paths.insert(
        "/v1.0/subscribedSkus/{id}".into(),
        json!({"get": read("One subscribed SKU", vec![id("`{tenantId}_{skuId}`"), select(SUBSCRIBED_SKU)], one("subscribedSku"))}),
    );
    let mut list_subscriptions = vec![select(SUBSCRIPTION)];
    list_subscriptions.extend(paging());
    paths.insert(
        "/v1.0/directory/subscriptions".into(),
        json!({"get": read("The tenant's subscriptions", list_subscriptions, collection_of("companySubscription"))}),
    );
    paths.insert(
        "/v1.0/directory/subscriptions/{id}".into(),
        json!({"get": read("One subscription", vec![id("the subscription's id (a GUID)"), select(SUBSCRIPTION)], one("companySubscription"))}),
    );
    paths.insert(
        "/v1.0/organization".into(),
        json!({"get": read("The tenant itself", vec![select(ORGANIZATION)], collection_of("organization"))}),
    );
    paths.insert(
        "/v1.0/auditLogs/directoryAudits".into(),
        json!({"get": read("The tenant's audit log, newest last", paging(), collection_of("directoryAudit"))}),
    );

    let mut list_users = vec![select(USER)];
    list_users.extend(paging());
    list_users.extend([
        json!({"name": "$count", "in": "query", "description": "with ConsistencyLevel: eventual",
               "schema": {"type": "string", "enum": ["true", "false"]}}),
        json!({"name": "$filter", "in": "query",
               "description": "assignedLicenses/any(x:x/skuId eq <guid>), userPrincipalName eq '…', accountEnabled eq true|false, usageLocation eq '…', startswith(displayName,'…'), joined with `and`",
               "schema": {"type": "string"}}),
        json!({"name": "$search", "in": "query", "description": "\"displayName:<text>\", with ConsistencyLevel: eventual",
               "schema": {"type": "string"}}),
        json!({"name": "ConsistencyLevel", "in": "header", "schema": {"type": "string", "enum": ["eventual"]}}),
    ]);
    let user_id = || id("the user's id (a GUID) or userPrincipalName");
    paths.insert(
        "/v1.0/users".into(),
        json!({
            "get": read("The tenant's users", list_users, collection_of("user")),
            "post": {
                "summary": "Create a user with Graph's required properties",
                "requestBody": body("createUser"),
                "responses": {"201": {
                    "description": "created; Location names it",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/user"}}}
                }}
            }
        }),
    );
    paths.insert(
        "/v1.0/users/{id}".into(),
        json!({
            "get": read("One user", vec![user_id(), select(USER)], one("user")),
            "patch": {
                "summary": "Update a user (usageLocation: null clears it)",
                "parameters": [user_id()],
                "requestBody": body("patchUser"),
                "responses": {"204": {"description": "updated"}}
            },
            "delete": {
                "summary": "Delete a user and free its licences",
                "parameters": [user_id()],
                "responses": {"204": {"description": "deleted"}}
            }
        }),
    );
    paths.insert(
        "/v1.0/users/{id}/assignLicense".into(),
        json!({"post": {
            "summary": "Add and remove licences in one call",
            "parameters": [user_id()],
            "requestBody": body("assignLicense"),
            "responses": {"200": ok(json!({"$ref": "#/components/schemas/user"}))}
        }}),
    );
    paths.insert(
        "/v1.0/users/{id}/licenseDetails".into(),
        json!({"get": read(
            "The user's licences with their service plans",
            vec![user_id(), select(&["id", "skuId", "skuPartNumber", "servicePlans"])],
            ok(json!({
                "type": "object",
                "required": ["value"],
                "properties": {"value": {"type": "array", "items": {"$ref": "#/components/schemas/licenseDetails"}}}
            })),
        )}),
    );

    for item in paths.values_mut() {
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let with_body = operation.get("requestBody").is_some();
            let responses = operation["responses"].as_object_mut().expect("set above");
            let errors = ERRORS
                .iter()
                .chain(BODY_ERRORS.iter().filter(|_| with_body));
            for (status, description) in errors {
                responses.insert(
                    (*status).into(),
                    json!({
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/graphError"}}}
                    }),
                );
            }
        }
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tenantry — Microsoft Graph–compatible surface",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The part of Microsoft Graph v1.0 tenantry serves, the tenant taken from the token \
    (a tenant token, or an application's access token from POST /{tenantId}/oauth2/v2.0/token). Errors use Graph's \
    envelope, with tenantry's stable code in error.code. See docs/graph.md."
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        }
    })
}

const USER: &[&str] = super::dto::USER_PROPERTIES;
const SUBSCRIBED_SKU: &[&str] = super::directory::SUBSCRIBED_SKU_PROPERTIES;
const SUBSCRIPTION: &[&str] = super::directory::SUBSCRIPTION_PROPERTIES;
const ORGANIZATION: &[&str] = super::directory::ORGANIZATION_PROPERTIES;

fn query_param(name: &str, description: &str, names: &[&str]) -> Value {
    json!({"name": name, "in": "query", "description": format!("{description}: {}", names.join(", ")),
           "schema": {"type": "string"}})
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn schemas() -> Value {
    let guid = || json!({"type": "string", "format": "uuid"});
    let time = || json!({"type": "string", "format": "date-time"});
    let text = || json!({"type": "string"});
    let nullable_text = || json!({"type": ["string", "null"]});
    let service_plan = json!({
        "type": "object",
        "properties": {
            "servicePlanId": guid(),
            "servicePlanName": text(),
            "provisioningStatus": {"type": "string", "enum": ["Success", "Disabled"]},
            "appliesTo": {"type": "string", "enum": ["User", "Company"]}
        }
    });
    let assigned_license = json!({
        "type": "object",
        "properties": {
            "@odata.type": {"type": "string", "enum": ["#microsoft.graph.assignedLicense"]},
            "skuId": guid(),
            "disabledPlans": {"type": "array", "items": guid()}
        }
    });
    json!({
        "graphError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "innerError"],
                "properties": {
                    "code": {"type": "string", "description": "tenantry's stable code"},
                    "message": text(),
                    "innerError": {
                        "type": "object",
                        "required": ["request-id", "date"],
                        "properties": {"request-id": text(), "client-request-id": text(), "date": time()}
                    }
                }
            }}
        },
        "servicePlanInfo": service_plan,
        "assignedLicense": assigned_license,
        "user": {
            "type": "object",
            "properties": {
                "id": guid(),
                "displayName": text(),
                "userPrincipalName": text(),
                "accountEnabled": {"type": "boolean"},
                "usageLocation": nullable_text(),
                "createdDateTime": time(),
                "assignedLicenses": {"type": "array", "items": {"$ref": "#/components/schemas/assignedLicense"}}
            }
        },
        "subscribedSku": {
            "type": "object",
            "properties": {
                "id": text(),
                "accountId": guid(),
                "appliesTo": {"type": "string", "enum": ["User", "Company"]},
                "capabilityStatus": {"type": "string", "enum": ["Enabled", "Warning", "Suspended", "Deleted", "LockedOut"]},
                "consumedUnits": {"type": "integer", "minimum": 0},
                "prepaidUnits": {
                    "type": "object",
                    "properties": {
                        "enabled": {"type": "integer"}, "suspended": {"type": "integer"},
                        "warning": {"type": "integer"}, "lockedOut": {"type": "integer"}
                    }
                },
                "servicePlans": {"type": "array", "items": {"$ref": "#/components/schemas/servicePlanInfo"}},
                "skuId": guid(),
                "skuPartNumber": text(),
                "subscriptionIds": {"type": "array", "items": guid()}
            }
        },
        "companySubscription": {
            "type": "object",
            "properties": {
                "id": guid(),
                "commerceSubscriptionId": guid(),
                "createdDateTime": time(),
                "isTrial": {"type": "boolean"},
                "nextLifecycleDateTime": {"type": ["string", "null"], "format": "date-time"},
                "ownerId": nullable_text(),
                "ownerTenantId": nullable_text(),
                "ownerType": nullable_text(),
                "serviceStatus": {"type": "array", "items": {"$ref": "#/components/schemas/servicePlanInfo"}},
                "skuId": guid(),
                "skuPartNumber": nullable_text(),
                "status": {"type": "string", "enum": ["Enabled", "Warning", "Suspended", "Deleted", "LockedOut"]},
                "totalLicenses": {"type": "integer", "minimum": 0}
            }
        },
        "licenseDetails": {
            "type": "object",
            "properties": {
                "id": text(),
                "skuId": guid(),
                "skuPartNumber": nullable_text(),
                "servicePlans": {"type": "array", "items": {"$ref": "#/components/schemas/servicePlanInfo"}}
            }
        },
        "organization": {
            "type": "object",
            "properties": {
                "id": guid(),
                "displayName": text(),
                "createdDateTime": time(),
                "tenantType": text(),
                "verifiedDomains": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": text(), "isDefault": {"type": "boolean"}, "isInitial": {"type": "boolean"},
                        "type": text(), "capabilities": text()
                    }
                }}
            }
        },
        "directoryAudit": {
            "type": "object",
            "properties": {
                "id": text(),
                "category": text(),
                "correlationId": nullable_text(),
                "result": {"type": "string", "enum": ["success", "failure", "timeout", "unknownFutureValue"]},
                "resultReason": text(),
                "activityDisplayName": text(),
                "activityDateTime": time(),
                "loggedByService": text(),
                "operationType": text(),
                "initiatedBy": {"type": "object"},
                "targetResources": {"type": "array", "items": {"type": "object"}},
                "additionalDetails": {"type": "array", "items": {
                    "type": "object", "properties": {"key": text(), "value": nullable_text()}
                }}
            }
        },
        "passwordProfile": {
            "type": "object",
            "additionalProperties": false,
            "required": ["password"],
            "properties": {
                "password": {"type": "string", "minLength": 1, "writeOnly": true},
                "forceChangePasswordNextSignIn": {"type": "boolean"},
                "forceChangePasswordNextSignInWithMfa": {"type": "boolean"}
            }
        },
        "createUser": {
            "type": "object",
            "additionalProperties": false,
            "required": ["accountEnabled", "displayName", "mailNickname", "passwordProfile", "userPrincipalName"],
            "properties": {
                "@odata.type": {"type": "string", "enum": ["#microsoft.graph.user"]},
                "accountEnabled": {"type": "boolean"},
                "displayName": text(),
                "mailNickname": {"type": "string", "minLength": 1, "maxLength": 64},
                "passwordProfile": {"$ref": "#/components/schemas/passwordProfile"},
                "userPrincipalName": text(),
                "usageLocation": {"type": ["string", "null"], "minLength": 2, "maxLength": 2}
            }
        },
        "patchUser": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "@odata.type": {"type": "string", "enum": ["#microsoft.graph.user"]},
                "userPrincipalName": text(),
                "displayName": text(),
                "usageLocation": {"type": ["string", "null"], "minLength": 2, "maxLength": 2},
                "accountEnabled": {"type": "boolean"}
            }
        },
        "assignLicense": {
            "type": "object",
            "additionalProperties": false,
            "required": ["addLicenses", "removeLicenses"],
            "properties": {
                "addLicenses": {"type": "array", "items": {"$ref": "#/components/schemas/assignedLicense"}},
                "removeLicenses": {"type": "array", "items": guid()}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` resolves, and every operation answers Graph's error envelope. (Schemathesis,
    /// in scripts/api-contract, loads and checks the whole document against the server.)
    #[test]
    fn references_resolve_and_errors_are_graphs() {
        let doc = document();
        let text = doc.to_string();
        let schemas = &doc["components"]["schemas"];
        for reference in text.split("\"$ref\":\"").skip(1) {
            let name = reference
                .split('"')
                .next()
                .unwrap()
                .trim_start_matches("#/components/schemas/");
            assert!(schemas.get(name).is_some(), "unresolved $ref {name}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let error = &operation["responses"]["401"]["content"]["application/json"];
                assert_eq!(
                    error["schema"]["$ref"], "#/components/schemas/graphError",
                    "{method} {path}"
                );
            }
        }
    }
}
