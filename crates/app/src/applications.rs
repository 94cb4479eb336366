//! Applications and the OAuth2 client-credentials grant, as Entra ID does it: a tenant's global
//! admin registers an application with one role and gets a client secret once; the application
//! trades its id and secret for a short-lived access token. Only hashes are stored.

use crate::tokens::{hash_token, new_token};
use crate::{Caller, Ledger, Result};
use tenantry_ledger::audit::AuditEntry;
use tenantry_ledger::role::{Action, Role};
use tenantry_ledger::{LedgerError, TenantId, Timestamp};
use tenantry_store::{AppTokenRecord, ApplicationRecord};
use uuid::Uuid;

/// An application just registered: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct RegisteredApplication {
    pub record: ApplicationRecord,
    pub client_secret: String,
}

/// An access token just issued to an application.
#[derive(Debug, Clone)]
pub struct AppAccessToken {
    pub access_token: String,
    pub expires_at: Timestamp,
}

/// Longest display name of an application (Entra ID allows 256 characters).
const MAX_NAME_CHARS: usize = 256;

fn parse_role(role: &str) -> Result<Role> {
    Role::parse(role).ok_or_else(|| {
        LedgerError::invalid(
            "InvalidRole",
            "role must be one of GlobalAdmin, BillingAdmin, LicenseAdmin, UserAdmin, GlobalReader",
        )
        .into()
    })
}

fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(LedgerError::invalid(
            "InvalidDisplayName",
            format!("displayName must be 1-{MAX_NAME_CHARS} characters without control characters"),
        )
        .into());
    }
    Ok(name.to_string())
}

impl Ledger {
    /// Registers an application of `tenant` with one role (a global admin of the tenant, or the
    /// operator). The client secret is in the answer, once; only its hash is stored.
    pub async fn register_application(
        &self,
        caller: &Caller,
        tenant: TenantId,
        display_name: &str,
        role: &str,
        now: Timestamp,
    ) -> Result<RegisteredApplication> {
        caller.authorize(tenant, Action::ManageTokens)?;
        let role = parse_role(role)?;
        let display_name = validate_name(display_name)?;
        let client_secret = new_token("tcs");
        let secret_hash = hash_token(&client_secret);
        let actor = caller.actor.clone();
        // Chosen once, outside the unit of work: a backend may run the unit again.
        let client_id = Uuid::new_v4();
        let record = self
            .write(move |tx| {
                if !tx.tenant_exists(tenant)? {
                    return Err(LedgerError::not_found("tenant").into());
                }
                let record = ApplicationRecord {
                    client_id,
                    tenant_id: tenant,
                    display_name: display_name.clone(),
                    role,
                    created_at: now,
                };
                tx.insert_application(&record, &secret_hash, &actor)?;
                tx.insert_audit(
                    AuditEntry {
                        tenant_id: Some(tenant),
                        actor: actor.clone(),
                        action: "application.created",
                        target_type: "application",
                        target_id: record.client_id.to_string(),
                        before: None,
                        after: Some(serde_json::json!({
                            "displayName": record.display_name,
                            "role": role.as_str()
                        })),
                    },
                    now,
                )?;
                Ok(record)
            })
            .await?;
        Ok(RegisteredApplication {
            record,
            client_secret,
        })
    }

    /// The client-credentials grant: a token valid for `lifetime_secs` when `client_id` is an
    /// application of `tenant` and `client_secret` is its secret; `None` otherwise (unknown
    /// client, another tenant's client and a wrong secret are not told apart).
    pub async fn issue_app_token(
        &self,
        tenant: TenantId,
        client_id: Uuid,
        client_secret: &str,
        lifetime_secs: i64,
        now: Timestamp,
    ) -> Result<Option<AppAccessToken>> {
        // Hashes of 256-bit secrets are compared: timing reveals nothing usable about a secret.
        let presented = hash_token(client_secret);
        let access_token = new_token("tat");
        let token_hash = hash_token(&access_token);
        let expires_at = Timestamp(now.0 + lifetime_secs);
        let issued = self
            .write(move |tx| {
                let Some((app, secret_hash)) = tx.load_application(client_id)? else {
                    return Ok(false);
                };
                if app.tenant_id != tenant || secret_hash != presented {
                    return Ok(false);
                }
                tx.insert_app_token(&AppTokenRecord {
                    token_hash: token_hash.clone(),
                    client_id,
                    tenant_id: tenant,
                    role: app.role,
                    expires_at,
                })?;
                Ok(true)
            })
            .await?;
        Ok(issued.then_some(AppAccessToken {
            access_token,
            expires_at,
        }))
    }

    /// Replaces an application's client secret (a global admin of its tenant, or the operator):
    /// the old secret stops working at once, and so does every access token issued with it —
    /// a rotation usually follows a leak. The new secret is in the answer, once.
    pub async fn rotate_application_secret(
        &self,
        caller: &Caller,
        tenant: TenantId,
        client_id: Uuid,
        now: Timestamp,
    ) -> Result<RegisteredApplication> {
        caller.authorize(tenant, Action::ManageTokens)?;
        let client_secret = new_token("tcs");
        let secret_hash = hash_token(&client_secret);
        let actor = caller.actor.clone();
        let record = self
            .write(move |tx| {
                let app = application_of(tx, tenant, client_id)?;
                tx.set_application_secret(client_id, &secret_hash)?;
                let revoked = tx.delete_app_tokens_of(client_id)?;
                tx.insert_audit(
                    AuditEntry {
                        tenant_id: Some(tenant),
                        actor: actor.clone(),
                        action: "application.secretRotated",
                        target_type: "application",
                        target_id: client_id.to_string(),
                        before: Some(serde_json::json!({"displayName": app.display_name})),
                        after: Some(serde_json::json!({
                            "displayName": app.display_name,
                            "accessTokensRevoked": revoked
                        })),
                    },
                    now,
                )?;
                Ok(app)
            })
            .await?;
        Ok(RegisteredApplication {
            record,
            client_secret,
        })
    }

    /// Deletes an application: its secret and every access token it holds stop working at once.
    pub async fn delete_application(
        &self,
        caller: &Caller,
        tenant: TenantId,
        client_id: Uuid,
        now: Timestamp,
    ) -> Result<()> {
        caller.authorize(tenant, Action::ManageTokens)?;
        let actor = caller.actor.clone();
        self.write(move |tx| {
            let app = application_of(tx, tenant, client_id)?;
            tx.delete_application(client_id)?;
            tx.insert_audit(
                AuditEntry {
                    tenant_id: Some(tenant),
                    actor: actor.clone(),
                    action: "application.deleted",
                    target_type: "application",
                    target_id: client_id.to_string(),
                    before: Some(serde_json::json!({
                        "displayName": app.display_name,
                        "role": app.role.as_str()
                    })),
                    after: None,
                },
                now,
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the access tokens expired at `now` (they are refused already); how many.
    pub async fn sweep_app_tokens(&self, now: Timestamp) -> Result<usize> {
        self.write(move |tx| tx.delete_expired_app_tokens(now))
            .await
    }
}

/// The application `client_id` of `tenant`; another tenant's application is not found, as an
/// unknown one.
fn application_of(
    tx: &mut dyn tenantry_store::LedgerTx,
    tenant: TenantId,
    client_id: Uuid,
) -> Result<ApplicationRecord> {
    match tx.load_application(client_id)? {
        Some((app, _)) if app.tenant_id == tenant => Ok(app),
        _ => Err(LedgerError::not_found("application").into()),
    }
}
